"""Converge to the inferrer's desired state: at start, periodically, and whenever told to."""

from __future__ import annotations

import asyncio
import logging

import httpx
from pydantic import TypeAdapter

from artifacts.manifest import Manifest
from modelhost.errors import ModelhostError
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
        self, store: ModelStore, client: httpx.AsyncClient, inferrer_url: str, interval_s: float
    ) -> None:
        self._store = store
        self._client = client
        self._url = f"{inferrer_url}/internal/v1/desired"
        self._interval_s = interval_s
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
        response = await self._client.get(self._url)
        response.raise_for_status()
        desired = _manifests.validate_json(response.content)
        failures: list[str] = []
        for manifest in desired:
            try:
                await self._store.ensure_loaded(manifest)
            except ModelhostError as exc:
                failures.append(exc.message)
        wanted = {m.key for m in desired}
        for loaded in self._store.loaded():
            if loaded.key not in wanted:
                self._store.unload(loaded.name, loaded.version)
        self.readiness.synced = not failures
        if not self.readiness.draining:
            self.readiness.reason = "; ".join(failures) if failures else "all models loaded"
