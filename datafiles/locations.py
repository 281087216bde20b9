"""Where a job's files are: a path inside the fleet's data directory, or `s3://bucket/key` on an
S3-compatible store. Both open through fsspec (s3fs for S3, with the endpoint, region and
credentials of the settings), so a node on another host reads its part of a file itself.

A local location is relative, has no `..` segment, and, links followed, stays inside the data
directory: anything else is refused before a byte is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import fsspec

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class LocationError(ValueError):
    """A location the fleet will not read or write; the message says why."""


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None  # None: AWS itself
    region: str | None = None
    key_id: str | None = None
    secret: str | None = None


@dataclass(frozen=True)
class Location:
    """`url` as given; `path` what fsspec opens on `protocol` (an absolute local path, or bucket/key)."""

    url: str
    protocol: str  # "file" or "s3"
    path: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


def parse_location(url: str, data_dir: Path) -> Location:
    """Check a location given by a user, against the data directory for local paths."""
    if url.startswith("s3://"):
        bucket, _, key = url.removeprefix("s3://").partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise LocationError(f"{url!r}: {bucket!r} is not an S3 bucket name")
        if not key or key.startswith("/") or ".." in PurePosixPath(key).parts:
            raise LocationError(f"{url!r}: give a key inside the bucket, with no '..'")
        return Location(url, "s3", f"{bucket}/{key}")
    if "://" in url:
        raise LocationError(f"{url!r}: a location is a path in the data directory or s3://bucket/key")
    relative = PurePosixPath(url)
    if not url or relative.is_absolute() or ".." in relative.parts or "\x00" in url:
        raise LocationError(f"{url!r}: give a relative path inside the data directory, with no '..'")
    root = data_dir.resolve()
    resolved = (root / relative).resolve()  # follows every link, existing or not yet
    if not resolved.is_relative_to(root):
        raise LocationError(f"{url!r} leads out of the data directory")
    return Location(url, "file", str(resolved))


def filesystem(location: Location, s3: S3Settings) -> fsspec.AbstractFileSystem:
    if location.protocol == "file":
        return fsspec.filesystem("file")
    return fsspec.filesystem(
        "s3",
        key=s3.key_id,
        secret=s3.secret,
        endpoint_url=s3.endpoint_url,
        client_kwargs={"region_name": s3.region} if s3.region else {},
        skip_instance_cache=True,
    )
