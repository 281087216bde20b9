"""Where a job's files are: a path inside the fleet's data directory, or `s3://bucket/key` on an
S3-compatible store. Both open through fsspec (s3fs for S3, with the endpoint, region and
credentials of the settings), so a node on another host reads its part of a file itself.

A local location is relative, has no `..` segment and no hidden one (`.name`: where the fleet keeps
its own state, the job store included), and, links followed, stays inside the data directory:
anything else is refused before a byte is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import fsspec
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datafiles.atomic_file import replace_file

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class LocationError(ValueError):
    """A location the fleet will not read or write; the message says why."""


class S3Settings(BaseSettings):
    """The S3-compatible store, from the variables every AWS client reads (the launcher and the
    compose file pass them from the .env): endpoint, region and credentials. Unset credentials
    leave the choice to botocore's chain (the environment, ~/.aws, an instance role)."""

    model_config = SettingsConfigDict(populate_by_name=True, frozen=True)

    endpoint_url: str | None = Field(
        default=None,
        validation_alias="AWS_ENDPOINT_URL_S3",
        description="The S3-compatible store's endpoint (AWS S3, MinIO, ...); unset: AWS.",
    )
    region: str | None = Field(default=None, validation_alias="AWS_REGION", description="Its region.")
    key_id: str | None = Field(
        default=None,
        validation_alias="AWS_ACCESS_KEY_ID",
        description="Access key id; unset credentials leave the choice to botocore's chain (the "
        "environment, ~/.aws, an instance role).",
    )
    secret: str | None = Field(
        default=None,
        validation_alias="AWS_SECRET_ACCESS_KEY",
        repr=False,
        description="Secret access key (with `AWS_ACCESS_KEY_ID`).",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # compose passes `${VAR:-}` for a variable not set


S3_VARIABLES = tuple(str(field.validation_alias) for field in S3Settings.model_fields.values())


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
    if any(part.startswith(".") for part in relative.parts):
        raise LocationError(f"{url!r}: hidden names (.name) hold the fleet's own state, not job files")
    root = data_dir.resolve()
    try:
        resolved = (root / relative).resolve()  # follows every link, existing or not yet
    except (RuntimeError, OSError) as exc:  # a loop of links, a name too long
        raise LocationError(f"{url!r}: {exc}") from None
    if not resolved.is_relative_to(root):
        raise LocationError(f"{url!r} leads out of the data directory")
    return Location(url, "file", str(resolved))


class Storage:
    """Locations resolved against one data directory and opened on one S3 endpoint: what a gateway
    or a node reads and writes job files through."""

    def __init__(self, data_dir: Path, s3: S3Settings) -> None:
        self.data_dir = data_dir
        self.s3 = s3
        self._s3fs: fsspec.AbstractFileSystem | None = None  # one client, its connections reused

    def location(self, url: str) -> Location:
        return parse_location(url, self.data_dir)

    def filesystem(self, location: Location) -> fsspec.AbstractFileSystem:
        if location.protocol == "file":
            return fsspec.filesystem("file")
        if self._s3fs is None:
            self._s3fs = fsspec.filesystem(
                "s3",
                key=self.s3.key_id,
                secret=self.s3.secret,
                endpoint_url=self.s3.endpoint_url,
                client_kwargs={"region_name": self.s3.region} if self.s3.region else {},
                # Other processes write the objects this one reads: never answer from a listing
                # cached before (an output folder listed empty, then a part's size asked).
                use_listings_cache=False,
            )
        return self._s3fs

    def size(self, location: Location) -> int:
        return int(self.filesystem(location).size(location.path))

    def read_range(self, location: Location, start: int, end: int) -> bytes:
        return bytes(self.filesystem(location).cat_file(location.path, start=start, end=end))

    def open_read(self, location: Location) -> BinaryIO:
        """A file object reading the location from its start."""
        handle: BinaryIO = self.filesystem(location).open(location.path, "rb")
        return handle

    def read_all(self, location: Location) -> bytes:
        return bytes(self.filesystem(location).cat_file(location.path))

    def remove(self, location: Location) -> None:
        """Delete a file or object if it exists."""
        filesystem = self.filesystem(location)
        if filesystem.exists(location.path):
            filesystem.rm_file(location.path)

    def write_stream_atomic(self, location: Location, source: BinaryIO) -> None:
        """Copy a file object whole to the location (an upload)."""
        self.write_blocks_atomic(location, iter(lambda: source.read(_BLOCK), b""))

    def write_atomic(self, location: Location, data: bytes) -> None:
        self.write_blocks_atomic(location, [data])

    def write_blocks_atomic(
        self, location: Location, blocks: Iterable[bytes], clear_litter: bool = False
    ) -> None:
        """All the blocks appear under the location at once, or nothing does: a local file is
        written beside it and renamed over it (`clear_litter`: see replace_file); an object is
        uploaded, and exists only once the upload completes (a failed one is aborted)."""
        if location.protocol == "s3":
            handle = self.filesystem(location).open(location.path, "wb")
            try:
                for block in blocks:
                    handle.write(block)
                handle.close()  # the upload completes: the object appears whole
            except BaseException:
                handle.discard()  # the upload is aborted: no object, not a partial one
                raise
            return
        replace_file(Path(location.path), blocks, clear_litter)

    def remove_tree(self, location: Location) -> None:
        """Delete a folder (or prefix) and everything under it, if it exists."""
        filesystem = self.filesystem(location)
        if filesystem.exists(location.path):
            filesystem.rm(location.path, recursive=True)

    def identity(self, location: Location) -> str:
        """What tells this version of a file from another, as `files_in` gives it."""
        if location.protocol == "s3":
            return _object_identity(self.filesystem(location).info(location.path))
        stat = os.stat(location.path, follow_symlinks=False)
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    def files_in(self, location: Location) -> list[FileEntry]:
        """The files directly in a folder (or under a prefix, not deeper), each with what tells one
        version of it from another: size and mtime (local), size, ETag and time (S3). Links are left
        out (one could lead out of the data directory), and so is a folder that does not exist."""
        if location.protocol == "s3":
            filesystem = self.filesystem(location)
            try:
                entries = filesystem.ls(location.path, detail=True, refresh=True)
            except FileNotFoundError:
                return []
            return [  # not a console's folder placeholder (`prefix/`), which names no file
                FileEntry(PurePosixPath(e["name"]).name, int(e["size"]), _object_identity(e))
                for e in entries
                if e.get("type") == "file" and not e["name"].endswith("/") and e["name"] != location.path
            ]
        found = []
        try:
            with os.scandir(location.path) as listing:
                for entry in listing:
                    if entry.is_file(follow_symlinks=False):
                        stat = entry.stat(follow_symlinks=False)
                        found.append(
                            FileEntry(entry.name, stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}")
                        )
        except (FileNotFoundError, NotADirectoryError):
            return []
        return found


@dataclass(frozen=True)
class FileEntry:
    name: str  # within its folder
    size: int
    identity: str  # changes whenever the file is written again


_BLOCK = 2**20


def _object_identity(entry: dict[str, Any]) -> str:
    """Size, ETag and time of an object: the same bytes put again are a new version too."""
    return f"{entry['size']}:{entry.get('ETag', '')}:{entry.get('LastModified', '')}"
