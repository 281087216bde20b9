"""Converge to the inferrer's desired state: one mechanism, run at start, every sync interval, and
whenever the inferrer says "sync now" (a deploy, a switch, a delete, a V2 load or unload).

Active versions are loaded ahead of traffic; a version a deploy or switch is about to activate is
warmed the same way. Stored versions that are not active are loaded on their first request and
unloaded once idle for a sync interval; anything no longer stored is unloaded as soon as its requests
have finished, and its cached artifact is deleted. With idle_unload_s, idle models are unloaded too
(scale to zero) and come back on their next request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from artifacts.manifest import Manifest
from artifacts.names import is_path_segment
from modelhost.artifact_cache import ArtifactCache
from modelhost.errors import ArtifactUnavailable, InvalidInput, ModelhostError, UnknownModel
from modelhost.store import ModelStore
from wire import tracing
from wire.node_calls import DesiredState, SyncAnswer, SyncRequest, VersionRef

logger = logging.getLogger(__name__)


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
        cache: ArtifactCache,
        client: httpx.AsyncClient,
        inferrer_url: str,
        interval_s: float,
        idle_unload_s: float | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._client = client
        self._inferrer_url = inferrer_url
        self._interval_s = interval_s
        self._idle_unload_s = idle_unload_s
        self.readiness = Readiness()
        # One sync at a time: each fetches the desired state after the one before it has applied its
        # own, so a sync working from an older state never undoes a newer one.
        self._lock = asyncio.Lock()
        # Warmed versions, (name, version, sha256) -> the monotonic time they stay loaded until.
        self._held: dict[tuple[str, str, str], float] = {}

    async def ensure_available(self, name: str, version: str, sha256: str) -> None:
        """Load on demand: a version this node does not have (or has as another artifact, from
        before a delete and a new deploy under the same name) is fetched on its first request."""
        if self._store.loaded_sha256((name, version)) == sha256:
            return
        with tracing.span("cold load", {"modelfleet.model": name, "modelfleet.version": version}):
            await self._load_on_demand(name, version, sha256)

    async def _load_on_demand(self, name: str, version: str, sha256: str) -> None:
        if not (is_path_segment(name) and is_path_segment(version)):  # checked again here: a path
            raise InvalidInput(f"invalid model name or version {name!r}/{version!r}: one path segment each")
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
        if manifest.served_sha256 != sha256:
            raise UnknownModel(f"model {name!r} version {version!r} is no longer artifact {sha256}")
        await self._store.ensure_loaded(manifest, cold_start=True)

    async def run_forever(self) -> None:
        """Sync every interval, whatever one sync met: a failed sync is logged, never the end."""
        while True:
            try:
                await self.sync()
                delay = self._interval_s
            except ArtifactUnavailable as exc:
                logger.warning("%s", exc.message)
                # Until the first sync succeeds, retry quickly: the node is not ready yet.
                delay = self._interval_s if self.readiness.synced else min(1.0, self._interval_s)
            except Exception:
                logger.exception("a sync failed; the next one runs in %s s", self._interval_s)
                delay = self._interval_s
            await asyncio.sleep(delay)

    async def sync(self, changes: SyncRequest | None = None) -> SyncAnswer:
        """Fetch the desired state and converge to it (plus `changes`); answer what this node holds."""
        changes = changes or SyncRequest()
        async with self._lock:
            for name in changes.release:
                self._store.unload(name)
            until = time.monotonic() + changes.hold_s
            self._held.update({(*m.key, m.served_sha256): until for m in changes.warm})
            failed = await self._converge(await self._desired(), changes.warm)
        loaded = [
            VersionRef(name=m.name, version=m.version, sha256=m.served_sha256) for m in self._store.loaded()
        ]
        return SyncAnswer(node=self._store.node, loaded=loaded, failed=failed)

    async def _desired(self) -> DesiredState:
        try:
            response = await self._client.get(f"{self._inferrer_url}/internal/v1/desired")
            response.raise_for_status()
            return DesiredState.model_validate_json(response.content)
        except httpx.HTTPError as exc:
            raise ArtifactUnavailable(f"cannot reach the inferrer for the desired state: {exc!r}") from None
        except ValidationError as exc:
            raise ArtifactUnavailable(f"the desired state is outside the contract: {exc}") from None

    async def _converge(self, desired: DesiredState, warm: list[Manifest]) -> dict[str, str]:
        failed: dict[str, str] = {}
        for manifest in warm + desired.load:
            if manifest.key in self._store.evicted and manifest not in warm:
                continue  # unloaded (idle, memory budget, V2 unload): back with its next request
            try:
                await self._store.ensure_loaded(manifest)
            except ModelhostError as exc:
                failed[f"{manifest.name}/{manifest.version}"] = exc.message
        # Ready once every active version is loaded (a warm one that failed only fails its deploy).
        active_failed = [failed[k] for k in (f"{m.name}/{m.version}" for m in desired.load) if k in failed]
        now = time.monotonic()
        stored = {(ref.name, ref.version, ref.sha256) for ref in desired.keep}
        active = {(*m.key, m.served_sha256) for m in desired.load}
        # A warmed version is held until it is switched to, its hold ends, or it is deleted.
        self._held = {
            key: until
            for key, until in self._held.items()
            if until > now and key in stored and key not in active
        }
        held = {(name, version) for name, version, _ in self._held}
        wanted = {m.key for m in desired.load + warm} | held
        self._store.retire(wanted, stored, grace_s=self._interval_s)
        if self._idle_unload_s is not None:
            self._store.evict_idle(self._idle_unload_s, keep=held)
        self._store.evicted &= {(name, version) for name, version, _ in stored}
        self._store.forget({(name, version) for name, version, _ in stored})
        loading = {m.served_sha256 for m in desired.load}
        needed = {sha256 for _, _, sha256 in stored} | loading
        await asyncio.to_thread(self._cache.prune, needed, loading)
        self.readiness.synced = not active_failed
        if not self.readiness.draining:
            self.readiness.reason = "; ".join(active_failed) if active_failed else "all models loaded"
        return failed
