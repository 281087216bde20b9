"""Model artifacts on local disk, fetched from the inferrer by sha256 and verified, and pruned: an
artifact no stored version needs goes at the next sync, and beyond the cache's size budget the least
recently used ones go too (the active versions' last: they are what a restart loads first)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from pathlib import Path

import httpx

from artifacts.formats import sha256_hex
from artifacts.manifest import Manifest
from artifacts.names import SHA256_PATTERN
from datafiles.atomic_file import is_temporary, replace_file
from modelhost.errors import ArtifactUnavailable, UnknownModel

logger = logging.getLogger(__name__)

_ARTIFACT_NAME = re.compile(SHA256_PATTERN)
# A temporary file older than this is what a killed fetch left (a live fetch writes for seconds).
_TEMP_LITTER_S = 3600.0


class ArtifactCache:
    def __init__(
        self,
        directory: Path,
        inferrer_url: str,
        client: httpx.AsyncClient,
        budget_bytes: int | None = None,
    ) -> None:
        self.directory = directory
        self._inferrer_url = inferrer_url
        self._client = client
        self._budget = budget_bytes
        self._warned = False  # once: the active artifacts alone exceed the budget
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.directory / sha256

    async def read(self, manifest: Manifest) -> bytes:
        """The bytes the node serves the version from (the upload, or the graph compiled from it),
        from the cache when their hash still matches, else from the inferrer."""
        sha256 = manifest.served_sha256
        path = self.path(sha256)
        try:
            data = await asyncio.to_thread(_read_touching, path)
            if sha256_hex(data) == sha256:
                return data
        except FileNotFoundError:  # not cached, or pruned by another worker process of this node
            pass
        data = await self._fetch(sha256)
        await asyncio.to_thread(replace_file, path, [data])
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

    def prune(self, needed: set[str], active: set[str]) -> list[str]:
        """Delete artifacts whose sha256 is not `needed`, then, while over the budget, the least
        recently used of the rest but the `active` ones (a restart loads those first: they stay,
        with a warning, should they alone exceed the budget). Returns the sha256s deleted."""
        cached, now = [], time.time()
        for path in self.directory.iterdir():
            with contextlib.suppress(FileNotFoundError):  # another worker pruned it meanwhile
                info = path.stat()
                if is_temporary(path) and now - info.st_mtime > _TEMP_LITTER_S:
                    path.unlink()
                elif _ARTIFACT_NAME.fullmatch(path.name):
                    cached.append((info.st_mtime, info.st_size, path.name))
        doomed = [name for _, _, name in cached if name not in needed]
        total = sum(size for _, size, name in cached if name in needed)
        evictable = sorted(a for a in cached if a[2] in needed and a[2] not in active)
        while self._budget is not None and total > self._budget and evictable:
            _, size, name = evictable.pop(0)  # the least recently used
            doomed.append(name)
            total -= size
        if self._budget is not None and total > self._budget and not self._warned:
            self._warned = True
            logger.warning("the active models' artifacts alone exceed the cache budget (%d bytes)", total)
        for name in doomed:
            self.path(name).unlink(missing_ok=True)
        return doomed


def _read_touching(path: Path) -> bytes:
    """Read a cached artifact and mark it used now (its mtime orders the budget's evictions)."""
    data = path.read_bytes()
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)
    return data
