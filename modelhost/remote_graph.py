"""An inference graph's predictions for a partition of a batch job, asked of the gateway: a node
holds no graph, so its batch worker sends each chunk of rows to the graph's route (as a client
would), and the graph's model calls go through nginx to the nodes like every other prediction.

A refusal of the rows (422, 413) is the rows' fault: the partition goes on row by row, as with a
model; a graph gone (404) fails the partition; anything else may pass on another attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson
import pandas as pd

from artifacts.schema import ModelSchema
from modelhost.errors import ArtifactUnavailable, InvalidInput, UnknownModel
from wire.bearer import bearer_headers
from wire.json import ORJSON_OPTIONS
from wire.tls import client_context

# One chunk through a graph of several steps may wait behind online traffic at every step.
_CHUNK_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class GatewayAccess:
    """How a node's batch worker reaches the gateway: its URL, the management token, the CA."""

    url: str
    token: str | None
    ca_file: str | None

    def client(self) -> httpx.Client:
        verify = client_context(self.ca_file) or True
        headers = bearer_headers(self.token) if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, verify=verify, timeout=_CHUNK_TIMEOUT_S)


class GraphGone(UnknownModel):
    """The graph (or its version) was deleted while its job ran."""


class GraphUnavailable(ArtifactUnavailable):
    """The gateway could not run the graph now: another attempt may."""


@dataclass
class RemoteGraph:
    """A partition's predictor (as modelhost.partitions.ServedModel) that asks the gateway."""

    node: str
    schema: ModelSchema  # of the model that reads the graph's request: how rows are parsed
    client: httpx.Client
    graph: str
    version: str
    predict_calls: list[tuple[int, float]] = field(default_factory=list)

    def predict(
        self, instances: Any, outputs: list[str], columns: list[str] | None = None
    ) -> dict[str, list[Any]]:
        path = f"/api/v1/graphs/{quote(self.graph, safe='')}/versions/{quote(self.version, safe='')}/predict"
        body = orjson.dumps(_rows(instances, columns), option=ORJSON_OPTIONS)
        try:
            answer = self.client.post(path, content=body, headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise GraphUnavailable(f"graph {self.graph!r}: the gateway did not answer: {exc!r}") from None
        reason = _reason(answer)
        if answer.status_code in (413, 422):
            raise InvalidInput(reason)
        if answer.status_code == 404:
            raise GraphGone(f"graph {self.graph!r} version {self.version!r}: {reason}")
        if answer.status_code != 200:
            raise GraphUnavailable(f"graph {self.graph!r}: {answer.status_code} {reason}")
        predictions = answer.json()["predictions"]
        self.predict_calls.append((len(predictions), answer.elapsed.total_seconds()))
        return {output: predictions for output in outputs}


def _rows(instances: Any, columns: list[str] | None) -> dict[str, Any]:
    """The graph route's body: `instances`, or `records` where the rows come with column names."""
    if isinstance(instances, pd.DataFrame):
        return {"records": instances.replace({np.nan: None}).to_dict("records")}
    if columns is not None:
        return {"records": [dict(zip(columns, row, strict=True)) for row in instances]}
    return {"instances": np.asarray(instances, dtype=np.float64)}


def _reason(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("error", answer.text[:300]))
    except (ValueError, AttributeError):
        return answer.text[:300]
