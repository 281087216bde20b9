"""One prediction path for every protocol (REST, Open Inference Protocol): check, cache, send
through nginx, and read back which node and version answered."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from artifacts.manifest import Manifest
from inferrer.client import ModelHostClientManager
from inferrer.errors import InvalidInput, UpstreamAnswered
from inferrer.prediction_cache import PredictionCache
from inferrer.repository import ModelRepository
from metrics.definitions import InferrerMetrics
from wire.json import ORJSON_OPTIONS


@dataclass(frozen=True)
class Prediction:
    model: str
    version: str
    node: str
    outputs: dict[str, list[Any]]


class PredictionService:
    def __init__(
        self,
        repository: ModelRepository,
        manager: ModelHostClientManager,
        metrics: InferrerMetrics,
        cache: PredictionCache,
    ) -> None:
        self.repository = repository
        self._manager = manager
        self._metrics = metrics
        self.cache = cache

    def resolve(self, name: str, version: str | None) -> Manifest:
        """The manifest a request targets: a pinned version, else the active one (404 if none)."""
        return self.repository.get(name, version)

    async def predict(self, manifest: Manifest, rows: np.ndarray, outputs: list[str]) -> Prediction:
        check_request(manifest, rows, outputs)
        name, version = manifest.name, manifest.version
        key = PredictionCache.key(name, version, outputs, rows) if self.cache.enabled else None
        if key is not None and (cached := self.cache.get(key)) is not None:
            return Prediction(name, version, "cache", cached)
        body = orjson.dumps(
            {"version": version, "instances": rows, "outputs": outputs}, option=ORJSON_OPTIONS
        )
        start = time.perf_counter()
        answer = await self._manager.predict(name, body)
        try:
            parsed = orjson.loads(answer.content)
        except orjson.JSONDecodeError:
            parsed = {"error": answer.content[:200].decode(errors="replace")}
        if answer.status_code != 200:
            raise UpstreamAnswered(answer.status_code, str(parsed.get("error", parsed)))
        node = answer.node or "unknown"
        labels = (name, version, node)
        self._metrics.upstream_latency.labels(*labels).observe(time.perf_counter() - start)
        self._metrics.predictions.labels(*labels).inc()
        if key is not None:
            self.cache.put(key, parsed["outputs"])
        return Prediction(name, parsed["version"], node, parsed["outputs"])


def check_request(manifest: Manifest, rows: np.ndarray, outputs: list[str]) -> None:
    """Validate against the stored schema before any node sees the data."""
    signature = manifest.signature
    unknown = [o for o in outputs if o not in signature.outputs]
    if unknown or not outputs:
        raise InvalidInput(
            f"output {', '.join(unknown) or '(none)'} not available; "
            f"model {manifest.name!r} offers {signature.outputs}"
        )
    if rows.ndim != 2 or rows.shape[1] != signature.n_features or rows.shape[0] == 0:
        raise InvalidInput(
            f"expected shape [rows, {signature.n_features}] (rows >= 1), got {list(rows.shape)}"
        )
