"""Model artifacts on local disk, fetched from the inferrer by sha256 and verified."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import httpx

from artifacts.formats import sha256_hex
from artifacts.manifest import Manifest
from modelhost.errors import ArtifactUnavailable, UnknownModel


class ArtifactCache:
    def __init__(self, directory: Path, inferrer_url: str, client: httpx.AsyncClient) -> None:
        self.directory = directory
        self._inferrer_url = inferrer_url
        self._client = client
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.directory / sha256

    async def read(self, manifest: Manifest) -> bytes:
        """The artifact's bytes, from the cache when its hash still matches, else from the inferrer."""
        path = self.path(manifest.sha256)
        if path.exists():
            data = await asyncio.to_thread(path.read_bytes)
            if sha256_hex(data) == manifest.sha256:
                return data
        data = await self._fetch(manifest.sha256)
        await asyncio.to_thread(_write_atomic, path, data)
        return data

    async def _fetch(self, sha256: str) -> bytes:
        url = f"{self._inferrer_url}/internal/v1/artifacts/{sha256}"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise ArtifactUnavailable(f"cannot fetch artifact {sha256}: {exc!r}") from None
        if response.status_code == 404:  # a manifest naming an artifact the repository does not hold
            raise UnknownModel(f"the inferrer stores no artifact with sha256 {sha256}")
        if response.status_code != 200:
            raise ArtifactUnavailable(f"inferrer answered {response.status_code} for {sha256}")
        if sha256_hex(response.content) != sha256:
            raise ArtifactUnavailable(f"artifact {sha256} failed its sha256 check")
        return response.content


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
