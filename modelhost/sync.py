"""Converge to the inferrer's desired state: at start, periodically, and whenever told to.

Active versions are loaded ahead of traffic; any other version is loaded on its first request.
Versions no longer wanted are unloaded once their requests have finished; with idle_unload_s, idle
models are unloaded too (scale to zero) and come back on their next request.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from artifacts.manifest import Manifest
from modelhost.errors import ArtifactUnavailable, ModelhostError, UnknownModel
from modelhost.store import ModelStore

logger = logging.getLogger(__name__)

_manifests = TypeAdapter(list[Manifest])


class Readiness:
    """Ready once the node has loaded every model the inferrer says it must serve."""

    def __init__(self) -> None:
        self.synced = False
        self.draining = False
        self.reason = "waiting for the first sync with the inferrer"

    @property
    def ready(self) -> bool:
        return self.synced and not self.draining

    def drain(self) -> None:
        """From now on: not ready, and new predictions answer 503 so nginx retries elsewhere."""
        self.draining = True
        self.reason = "draining: leaving the fleet"


class Reconciler:
    def __init__(
        self,
        store: ModelStore,
        client: httpx.AsyncClient,
        inferrer_url: str,
        interval_s: float,
        idle_unload_s: float | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._inferrer_url = inferrer_url
        self._interval_s = interval_s
        self._idle_unload_s = idle_unload_s
        self.readiness = Readiness()
        # Syncs and broadcast loads/unloads apply one at a time, so a sync working from a
        # desired state fetched just before a broadcast never undoes that broadcast.
        self._lock = asyncio.Lock()

    async def load(self, manifest: Manifest) -> None:
        async with self._lock:
            await self._store.ensure_loaded(manifest)

    async def unload(self, name: str) -> list[str]:
        async with self._lock:
            return self._store.unload(name)

    async def ensure_available(self, name: str, version: str, sha256: str) -> None:
        """Load on demand: a version this node does not have (or has as another artifact, from
        before a delete and a new deploy under the same name) is fetched on its first request."""
        if self._store.loaded_sha256((name, version)) == sha256:
            return
        url = f"{self._inferrer_url}/internal/v1/manifests/{quote(name, safe='')}/{quote(version, safe='')}"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise ArtifactUnavailable(f"cannot reach the inferrer for {name}/{version}: {exc!r}") from None
        if response.status_code == 404:
            raise UnknownModel(f"model {name!r} has no version {version!r}")
        if response.status_code != 200:
            raise ArtifactUnavailable(f"inferrer answered {response.status_code} for {name}/{version}")
        manifest = Manifest.model_validate_json(response.content)
        if manifest.sha256 != sha256:
            raise UnknownModel(f"model {name!r} version {version!r} is no longer artifact {sha256}")
        await self._store.ensure_loaded(manifest, cold_start=True)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sync_once()
                delay = self._interval_s
            except httpx.HTTPError as exc:
                logger.warning("cannot reach the inferrer for the desired state: %r", exc)
                # Until the first sync succeeds, retry quickly: the node is not ready yet.
                delay = self._interval_s if self.readiness.synced else min(1.0, self._interval_s)
            await asyncio.sleep(delay)

    async def sync_once(self) -> None:
        async with self._lock:
            await self._apply_desired()

    async def _apply_desired(self) -> None:
        response = await self._client.get(f"{self._inferrer_url}/internal/v1/desired")
        response.raise_for_status()
        desired = _manifests.validate_json(response.content)
        wanted = {m.key for m in desired}
        failures: list[str] = []
        for manifest in desired:
            if manifest.key in self._store.evicted:
                continue  # unloaded while idle: it comes back with its next request
            try:
                await self._store.ensure_loaded(manifest)
            except ModelhostError as exc:
                failures.append(exc.message)
        self._store.retire(wanted, grace_s=self._interval_s)
        if self._idle_unload_s is not None:
            self._store.evict_idle(self._idle_unload_s)
        self._store.evicted &= wanted
        self.readiness.synced = not failures
        if not self.readiness.draining:
            self.readiness.reason = "; ".join(failures) if failures else "all models loaded"
