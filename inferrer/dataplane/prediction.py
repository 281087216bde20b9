"""One prediction path for every protocol (REST, Open Inference Protocol): check, cache, batch,
send through nginx, and read back which node and version answered.

Rows are a float matrix, sent to a node as `instances`, or a table of mixed values
(inferrer/dataplane/columns.py), sent as `instances` of JSON values plus the fitted `columns`, on
which the node builds a DataFrame. The body and the answer are wire.node_calls' types."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np
import orjson
from pydantic import ValidationError

from artifacts.manifest import Manifest
from inferrer.dataplane.balancer_client import Upstream
from inferrer.dataplane.batching import Batcher
from inferrer.dataplane.columns import is_table
from inferrer.dataplane.prediction_cache import PredictionCache
from inferrer.errors import InvalidInput, ModelNotFound, UpstreamAnswered
from inferrer.state.repository import ModelRepository
from metrics.definitions import InferrerMetrics
from wire.errors import NodeRefusal
from wire.json import ORJSON_OPTIONS
from wire.node_calls import NodePredictBody, NodePrediction, prediction


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
        upstream: Upstream,
        metrics: InferrerMetrics,
        cache: PredictionCache,
        batcher: Batcher,
    ) -> None:
        self.repository = repository
        self._upstream = upstream
        self._metrics = metrics
        self.cache = cache
        self._batcher = batcher

    def _stored_versions(self) -> set[tuple[str, str]]:
        return {(name, version) for name, version, _ in self.repository.stored()}

    def resolve(self, name: str, version: str | None) -> Manifest:
        """The manifest a request targets: a pinned version, else the active one (404 if none)."""
        return self.repository.get(name, version)

    async def predict(self, manifest: Manifest, rows: np.ndarray, outputs: list[str]) -> Prediction:
        check_request(manifest, rows, outputs)
        name, version = manifest.name, manifest.version
        self._metrics.follow(self.repository.generation(), self._stored_versions)
        key = None
        if self.cache.enabled:
            self.cache.follow(self.repository.generation(), self.repository.stored)
            key = PredictionCache.key(manifest, outputs, rows)
            if (cached := self.cache.get(key)) is not None:
                return Prediction(name, version, "cache", cached)

        lane = (name, version, manifest.served_sha256, tuple(outputs), is_table(rows))

        async def send(batch: np.ndarray) -> tuple[str, str, dict[str, list[Any]]]:
            answered = await self._send(manifest, batch, outputs)
            self._batcher.observe_predict(lane, answered["predict_s"])
            return answered["version"], answered["node"], answered["outputs"]

        if manifest.batching:
            answered_version, node, results = await self._batcher.submit(lane, rows, send)
        else:
            answered_version, node, results = await send(rows)
        self._metrics.predictions(name, answered_version, node).inc()
        if key is not None:
            self.cache.put(key, results)
        return Prediction(name, answered_version, node, results)

    async def _send(self, manifest: Manifest, rows: np.ndarray, outputs: list[str]) -> NodePrediction:
        """One upstream call through nginx: the node's answer, with the node that gave it."""
        body: NodePredictBody = {
            "version": manifest.version,
            "sha256": manifest.served_sha256,
            "outputs": outputs,
            "instances": rows,  # orjson writes a float array as it is
        }
        if is_table(rows):  # ... and an object array not at all
            body |= {"columns": manifest.signature.feature_names or [], "instances": rows.tolist()}
        path = f"/api/v1/models/{quote(manifest.name, safe='')}/predict"
        payload = orjson.dumps(body, option=ORJSON_OPTIONS)
        start = time.perf_counter()
        answer = await self._upstream.request("POST", path, payload)
        if answer.status_code != 200 and NodeRefusal.read(answer.status_code, answer.content).retry:
            # A node could not serve this model (not loaded there, no memory room, its artifact
            # out of reach): nginx passed that on without marking the node failed; try once more.
            self._metrics.upstream_retries.inc()
            answer = await self._upstream.request("POST", path, payload)
        if answer.status_code != 200:
            refusal = NodeRefusal.read(answer.status_code, answer.content)
            if (
                (refusal.retry or refusal.status == 404)  # 404: its artifact was gone when fetched
                and (manifest.name, manifest.version, manifest.served_sha256) not in self.repository.stored()
            ):
                raise ModelNotFound(
                    f"model {manifest.name!r} version {manifest.version!r} was deleted while this request "
                    "was under way"
                )
            raise UpstreamAnswered(refusal.status, refusal.reason)
        try:
            answered = prediction.validate_json(answer.content)
        except ValidationError as exc:
            raise UpstreamAnswered(502, f"a node answered outside the contract: {exc}") from None
        answered["node"] = answer.node or answered["node"]
        self._metrics.upstream_latency(manifest.name, manifest.version, answered["node"]).observe(
            time.perf_counter() - start
        )
        return answered


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
    if rows.dtype.kind == "f" and np.isinf(rows).any():  # JSON has no infinity: it would arrive as null
        raise InvalidInput("infinite values cannot be predicted on (JSON has no infinity)")
