"""The models a node has loaded, and predict on one dedicated thread."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from artifacts.formats import ArtifactError, load_artifact
from artifacts.manifest import Manifest
from metrics.definitions import ModelhostMetrics
from modelhost.artifact_cache import ArtifactCache
from modelhost.errors import ArtifactUnavailable, InvalidInput, ModelNotLoaded

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    manifest: Manifest
    estimator: Any


class ModelStore:
    def __init__(self, node: str, cache: ArtifactCache, metrics: ModelhostMetrics) -> None:
        self.node = node
        self._cache = cache
        self._metrics = metrics
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        # One thread: concurrent predicts would only fight over the GIL (PERFORMANCE.md).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.in_flight = 0

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def loaded(self) -> list[Manifest]:
        return [m.manifest for m in self._models.values()]

    def get(self, name: str, version: str) -> LoadedModel:
        model = self._models.get((name, version))
        if model is None:
            raise ModelNotLoaded(f"model {name!r} version {version!r} is not loaded on {self.node}")
        return model

    async def ensure_loaded(self, manifest: Manifest) -> LoadedModel:
        """Load a model version (fetching its artifact if not cached); a no-op when loaded."""
        lock = self._loading.setdefault(manifest.sha256, asyncio.Lock())
        async with lock:
            current = self._models.get(manifest.key)
            if current is not None and current.manifest.sha256 == manifest.sha256:
                return current
            start = time.perf_counter()
            data = await self._cache.read(manifest)
            try:
                estimator = await asyncio.to_thread(load_artifact, data, manifest.format)
            except ArtifactError as exc:
                raise ArtifactUnavailable(f"cannot load {manifest.name}/{manifest.version}: {exc}") from None
            loaded = LoadedModel(manifest, estimator)
            self._models[manifest.key] = loaded
            elapsed = time.perf_counter() - start
            self._metrics.load_duration.labels(manifest.name, manifest.version, self.node).observe(elapsed)
            self._metrics.loaded_models.labels(self.node).set(len(self._models))
            logger.info("loaded %s/%s in %.3fs", manifest.name, manifest.version, elapsed)
            return loaded

    def unload(self, name: str, version: str | None = None) -> list[str]:
        keys = [k for k in self._models if k[0] == name and (version is None or k[1] == version)]
        for key in keys:
            del self._models[key]
            logger.info("unloaded %s/%s", *key)
        self._metrics.loaded_models.labels(self.node).set(len(self._models))
        return [version for _, version in keys]

    async def predict(self, name: str, version: str, instances: Any, output: str) -> list[Any]:
        model = self.get(name, version)
        rows = as_rows(instances, model.manifest.signature.n_features)
        if output not in model.manifest.signature.outputs:
            raise InvalidInput(f"model {name!r} has no output {output!r}")
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            result, elapsed = await loop.run_in_executor(
                self._executor, _timed_call, getattr(model.estimator, output), rows
            )
        finally:
            self.in_flight -= 1
        labels = (name, version, self.node)
        self._metrics.predict_latency.labels(*labels).observe(elapsed)
        self._metrics.predicted_rows.labels(*labels).inc(len(rows))
        return result


def as_rows(instances: Any, n_features: int) -> np.ndarray:
    """A 2-D float matrix with `n_features` columns, or InvalidInput saying what is wrong."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("instances must be a non-empty list of rows")
    try:
        rows = np.asarray(instances, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidInput("instances must be rows of numbers of equal length") from None
    if rows.ndim != 2:
        raise InvalidInput(f"instances must be a list of rows; got an array of {rows.ndim} dims")
    if rows.shape[1] != n_features:
        raise InvalidInput(f"expected {n_features} features per row, got {rows.shape[1]}")
    return rows


def _timed_call(method: Any, rows: np.ndarray) -> tuple[list[Any], float]:
    start = time.perf_counter()
    try:
        result = method(rows)
    except ValueError as exc:  # the estimator rejected the values (e.g. NaN without an imputer)
        raise InvalidInput(f"model rejected the input: {exc}") from None
    return np.asarray(result).tolist(), time.perf_counter() - start
