"""The models a node has loaded: loading within a memory budget, predict on one dedicated thread,
and unloading what is idle or no longer wanted once its requests have finished."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from artifacts.formats import ArtifactError, load_artifact
from artifacts.manifest import Manifest
from artifacts.schema import ModelSchema
from metrics.definitions import ModelhostMetrics
from modelhost.artifact_cache import ArtifactCache
from modelhost.errors import InvalidInput, MemoryBudgetExceeded, ModelNotLoaded, UnloadableArtifact
from modelhost.inputs import as_frame, as_rows

logger = logging.getLogger(__name__)

Key = tuple[str, str]
_EWMA_WEIGHT = 0.3  # weight of the newest cold start in the moving average


@dataclass
class LoadedModel:
    manifest: Manifest
    estimator: Any
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    predict_s: float | None = None  # moving average of one predict call

    def idle_for(self, now: float) -> float:
        return 0.0 if self.in_flight else now - self.last_used


class ModelStore:
    def __init__(
        self,
        node: str,
        cache: ArtifactCache,
        metrics: ModelhostMetrics,
        memory_budget_bytes: int | None = None,
        inline_below_s: float = 0.0,
    ) -> None:
        self.node = node
        self._cache = cache
        self._metrics = metrics
        self._budget = memory_budget_bytes
        self._models: dict[Key, LoadedModel] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        self.evicted: set[Key] = set()  # unloaded to save memory: loaded again on demand only
        self.cold_start_avg_s: dict[Key, float] = {}
        # One thread: concurrent predicts would only fight over the GIL (a wide threadpool halved a
        # 100-tree forest's throughput on 2 cores). A model
        # whose predict takes less than `inline_below_s` runs on the event loop: handing it to the
        # thread would cost more (a one-row LogisticRegression served ~35% fewer req/s that way).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._inline_below_s = inline_below_s

    def close(self) -> None:
        self._thread.shutdown(cancel_futures=True)

    @property
    def in_flight(self) -> int:
        return sum(m.in_flight for m in self._models.values())

    def loaded(self) -> list[Manifest]:
        return [m.manifest for m in self._models.values()]

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "name": m.manifest.name,
                "version": m.manifest.version,
                "sha256": m.manifest.served_sha256,
                "in_flight": m.in_flight,
                "idle_s": round(m.idle_for(now), 3),
                "cold_start_avg_s": self.cold_start_avg_s.get(key),
            }
            for key, m in self._models.items()
        ]

    def predict_seconds(self, key: Key) -> float:
        """The moving average of one predict call of a loaded version (0 before its first)."""
        model = self._models.get(key)
        return model.predict_s or 0.0 if model is not None else 0.0

    def manifest(self, key: Key) -> Manifest:
        """The manifest of a loaded version."""
        model = self._models.get(key)
        if model is None:
            raise ModelNotLoaded(f"model {key[0]!r} version {key[1]!r} is not loaded on {self.node}")
        return model.manifest

    def loaded_sha256(self, key: Key) -> str | None:
        """The artifact this node serves under a (name, version), if it has one loaded."""
        model = self._models.get(key)
        return model.manifest.served_sha256 if model is not None else None

    async def ensure_loaded(self, manifest: Manifest, cold_start: bool = False) -> None:
        """Load a model version (fetching its artifact if not cached); a no-op when loaded."""
        lock = self._loading.setdefault(manifest.served_sha256, asyncio.Lock())
        async with lock:
            current = self._models.get(manifest.key)
            if current is not None and current.manifest.served_sha256 == manifest.served_sha256:
                return
            self._make_room(manifest.served_size)
            start = time.perf_counter()
            data = await self._cache.read(manifest)
            try:
                estimator = await asyncio.to_thread(load_served, data, manifest)
            except ArtifactError as exc:
                raise UnloadableArtifact(f"cannot load {manifest.name}/{manifest.version}: {exc}") from None
            self._models[manifest.key] = LoadedModel(manifest, estimator)
            self.evicted.discard(manifest.key)
            elapsed = time.perf_counter() - start
            labels = (manifest.name, manifest.version, self.node)
            self._metrics.load_duration(*labels).observe(elapsed)
            if cold_start:
                self._metrics.cold_start(*labels).observe(elapsed)
                previous = self.cold_start_avg_s.get(manifest.key, elapsed)
                self.cold_start_avg_s[manifest.key] = round(
                    (1 - _EWMA_WEIGHT) * previous + _EWMA_WEIGHT * elapsed, 6
                )
            self._metrics.loaded_models.labels(self.node).set(len(self._models))
            logger.info("loaded %s/%s in %.3fs", manifest.name, manifest.version, elapsed)

    def unload(self, name: str, version: str | None = None) -> list[str]:
        keys = [k for k in self._models if k[0] == name and (version is None or k[1] == version)]
        for key in keys:
            self._drop(key, "unloaded")
        # Not loaded again by the periodic sync; a request (or a new deploy) brings it back.
        self.evicted |= set(keys)
        return [version for _, version in keys]

    def retire(self, wanted: set[Key], stored: set[tuple[str, str, str]], grace_s: float) -> None:
        """Once no request uses them, unload versions no longer stored (at once) and stored versions
        not `wanted` (after grace_s without a request). `stored`: (name, version, sha256)."""
        now = time.monotonic()
        for key, model in list(self._models.items()):
            if key in wanted or model.in_flight:
                continue
            if (*key, model.manifest.served_sha256) not in stored:
                self._drop(key, "no longer stored")
            elif model.idle_for(now) >= grace_s:
                self._drop(key, "retired")

    def forget(self, stored: set[Key]) -> None:
        """What this node keeps per version, for versions no longer stored: their series, cold-start
        averages and load locks (a deploy a minute would otherwise grow them for good)."""
        self._metrics.forget(stored)
        for key in [k for k in self.cold_start_avg_s if k not in stored]:
            del self.cold_start_avg_s[key]
        kept_artifacts = {m.manifest.served_sha256 for m in self._models.values()}
        for sha256, lock in list(self._loading.items()):
            if sha256 not in kept_artifacts and not lock.locked():
                del self._loading[sha256]

    def evict_idle(self, idle_s: float, keep: set[Key] | None = None) -> None:
        """Scale to zero: unload models idle for longer than idle_s, but those in `keep`; the next
        request loads them."""
        now = time.monotonic()
        for key, model in list(self._models.items()):
            if model.idle_for(now) > idle_s and key not in (keep or set()):
                self._drop(key, "idle")
                self.evicted.add(key)

    async def predict(
        self,
        name: str,
        version: str,
        sha256: str,
        instances: Any,
        outputs: list[str],
        columns: list[str] | None = None,
    ) -> dict[str, list[Any]]:
        """With the artifact `sha256` loaded as (name, version): on a float matrix, or on a DataFrame
        when `columns` name the fitted features."""
        model = self._models.get((name, version))
        if model is None or model.manifest.served_sha256 != sha256:
            raise ModelNotLoaded(f"model {name!r} version {version!r} is not loaded on {self.node}")
        rows = model_inputs(model.manifest.signature, instances, outputs, columns)
        methods = [getattr(model.estimator, output) for output in outputs]
        model.in_flight += 1
        try:
            if model.predict_s is not None and model.predict_s < self._inline_below_s:
                results, elapsed = timed_call(methods, rows)
            else:
                results, elapsed = await asyncio.get_running_loop().run_in_executor(
                    self._thread, timed_call, methods, rows
                )
        finally:
            model.in_flight -= 1
            model.last_used = time.monotonic()
        previous = elapsed if model.predict_s is None else model.predict_s
        model.predict_s = (1 - _EWMA_WEIGHT) * previous + _EWMA_WEIGHT * elapsed
        self.count_predicted((name, version), [(len(rows), elapsed)])
        return dict(zip(outputs, results, strict=True))

    def count_predicted(self, key: Key, calls: list[tuple[int, float]]) -> None:
        """Each predict call's rows and seconds in the node's metrics (a batch job's calls run in
        the batch worker process, which hands them over with its answer)."""
        latency = self._metrics.predict_latency(*key, self.node)
        predicted_rows = self._metrics.predicted_rows(*key, self.node)
        for rows, seconds in calls:
            latency.observe(seconds)
            predicted_rows.inc(rows)

    def _make_room(self, size: int) -> None:
        """Unload least-recently-used idle models until `size` more bytes fit in the budget."""
        if self._budget is None:
            return
        used = sum(m.manifest.served_size for m in self._models.values())
        for key, model in sorted(self._models.items(), key=lambda item: item[1].last_used):
            if used + size <= self._budget:
                break
            if not model.in_flight:
                used -= model.manifest.served_size
                self._drop(key, "over the memory budget")
                self.evicted.add(key)
        if used + size > self._budget:
            raise MemoryBudgetExceeded(
                f"{self.node}: loading {size} bytes would exceed the memory budget of {self._budget} bytes"
            )

    def _drop(self, key: Key, why: str) -> None:
        del self._models[key]
        self._metrics.loaded_models.labels(self.node).set(len(self._models))
        logger.info("unloaded %s/%s (%s)", *key, why)


def model_inputs(
    signature: ModelSchema, instances: Any, outputs: list[str], columns: list[str] | None
) -> np.ndarray | pd.DataFrame:
    """What the model's methods are called on, once the outputs asked for are known to be offered:
    a float matrix, or a DataFrame of the fitted features when `columns` name them."""
    unknown = [o for o in outputs if o not in signature.outputs]
    if unknown or not outputs:
        raise InvalidInput(f"outputs {outputs} not available; the model offers {signature.outputs}")
    if isinstance(instances, np.ndarray | pd.DataFrame):
        return instances  # read from a partition by this node (datafiles/columnar.py)
    if columns is None:
        return as_rows(instances, signature.n_features)
    return as_frame(instances, columns, signature)


def load_served(data: bytes, manifest: Manifest) -> Any:
    """The upload as its format loads it, or the ONNX graph verified against it at deploy."""
    compiled = manifest.compiled
    if compiled is None:
        return load_artifact(data, manifest.format, manifest.trusted_types)
    from artifacts.onnx_model import OnnxModel, SourceModel  # onnxruntime: only where ONNX is served

    try:
        return OnnxModel(data, source=SourceModel(manifest.signature.classes, compiled.accepts_missing))
    except ArtifactError as exc:
        raise ArtifactError(f"its verified ONNX graph: {exc}") from None


def _dense(answer: Any) -> np.ndarray:
    """An answer as an array: a sparse matrix (a one-hot encoder's transform) made dense."""
    return np.asarray(answer.toarray() if callable(getattr(answer, "toarray", None)) else answer)


def timed_call(methods: list[Any], rows: np.ndarray | pd.DataFrame) -> tuple[list[list[Any]], float]:
    start = time.perf_counter()
    try:
        results = [_dense(method(rows)).tolist() for method in methods]
    except (ValueError, TypeError) as exc:
        # The estimator rejected the values: NaN without an imputer, numbers in a column it learnt as text.
        raise InvalidInput(f"model rejected the input: {exc}") from None
    if any(not isinstance(result, list) or len(result) != len(rows) for result in results):
        # One answer per row, or batched requests would be handed each other's rows.
        raise InvalidInput("the model did not answer one value per row")
    return results, time.perf_counter() - start
