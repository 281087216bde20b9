"""The contract between the inferrer and its nodes, declared once for both services.

The inferrer builds these bodies and reads these answers; a node parses the same types and builds
the same answers; each service's OpenAPI document derives its schemas from them. The predict body
is a TypedDict so that the inferrer can send a numpy matrix as `instances` (orjson writes it
without copying) while the node validates what arrives with the same type.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WithJsonSchema, with_config
from typing_extensions import TypedDict

from artifacts.manifest import Manifest
from artifacts.names import SHA256_PATTERN
from artifacts.schema import OUTPUTS

_CELL = {"type": ["number", "string", "boolean", "null"]}
# Numbers, or, with the fitted feature names in `columns`, any JSON scalars (text columns). The node
# checks the values when it builds the rows (a 4xx for anything else), so they travel unvalidated.
Instances = Annotated[
    Any,
    WithJsonSchema(
        {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": _CELL}}
    ),
]
# At least one of them; the node refuses (422) one its model does not offer, as its signature says.
Outputs = Annotated[
    list[str],
    Field(min_length=1),
    WithJsonSchema({"type": "array", "minItems": 1, "items": {"type": "string", "enum": OUTPUTS}}),
]


@with_config(ConfigDict(extra="forbid"))
class NodePredictBody(TypedDict):
    """What the inferrer sends to `POST /api/v1/models/{name}/predict` on a node (through nginx).

    `sha256` names the artifact the inferrer means by `version`, as nodes load it (the manifest's
    served artifact: the verified ONNX graph where one was compiled, else the upload): the node
    predicts with exactly that one (a version deleted and deployed again under the same number, or
    from the same file under another runtime, is another artifact)."""

    version: str
    sha256: Annotated[str, Field(pattern=SHA256_PATTERN)]
    instances: Instances
    outputs: NotRequired[Outputs]
    columns: NotRequired[list[str]]


@with_config(ConfigDict(extra="forbid"))
class NodePrediction(TypedDict):
    """A node's predict answer: one list per requested output (`predict`, `predict_proba`), a row each."""

    model: str
    version: str
    outputs: dict[str, list[Any]]
    node: str
    # The moving average of one predict call of this version on this node, in seconds: the gateway's
    # batcher gathers requests for a model whose calls cost this much (see dataplane/batching.py).
    predict_s: Annotated[float, Field(ge=0)]


predict_body = TypeAdapter(NodePredictBody)
prediction = TypeAdapter(NodePrediction)


class VersionRef(BaseModel):
    """One stored version, by the artifact it is."""

    name: str
    version: str
    sha256: str = Field(pattern=SHA256_PATTERN)  # what nodes load: Manifest.served_sha256


class DesiredState(BaseModel):
    """`GET /internal/v1/desired` on the inferrer: what every node converges to.

    `load`: the active versions, loaded ahead of traffic. `keep`: every stored version; a node may
    hold one of these (loaded by a pinned request) until it has been idle for a sync interval, and
    unloads anything else at once (a deleted model, a number reused by another artifact)."""

    load: list[Manifest]
    keep: list[VersionRef]


class SyncRequest(BaseModel):
    """`POST /internal/v1/sync` on a node: converge now, with these changes to the desired state.

    `warm`: versions about to be activated, loaded now (a deploy or a switch waits for them) and kept
    loaded for `hold_s` even while not active, so that a node answering early does not retire one
    before the slowest node has answered and the switch is made.
    `release`: model names whose memory to release; they load again on their next request."""

    model_config = ConfigDict(extra="forbid")

    warm: list[Manifest] = []
    hold_s: Annotated[float, Field(ge=0, le=3600)] = 0.0
    release: list[Annotated[str, Field(max_length=64)]] = []


sync_request = TypeAdapter(SyncRequest)


class SyncAnswer(BaseModel):
    """A node's state after a sync: what it holds, and what it could not load and why."""

    model_config = ConfigDict(extra="forbid")

    node: str
    loaded: list[VersionRef]
    failed: dict[str, str]  # "name/version" -> reason
