"""The success bodies of the gateway's REST routes (inferrer/api/fleet.py, models.py, predict.py),
as its OpenAPI document declares them. The V2 protocol's are in wire/v2_answers.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from artifacts.manifest import Manifest, RuntimeChoice
from artifacts.schema import ModelSchema
from wire.modelhost_answers import LoadedModelStatus, Pong
from wire.openapi import Answer


class Welcome(Answer):
    name: Literal["modelfleet"]
    service: Literal["inferrer"]
    version: str
    nodes: int
    docs: str


class Live(Answer):
    """The process answers (also the V2 server live answer)."""

    live: Literal[True]


class FleetReady(Answer):
    ready: Literal[True]
    ready_nodes: Annotated[list[str], Field(min_length=1)]


class FleetNotReady(Answer):
    """503: no node is ready."""

    ready: Literal[False]
    ready_nodes: Annotated[list[str], Field(max_length=0)]


class NodeReport(Answer):
    """What the gateway learnt from one node of the topology (asked directly); `error` when it could not."""

    id: str
    url: str
    live: bool
    ready: bool
    draining: bool
    in_flight: int
    models: list[LoadedModelStatus]
    error: str | None


class NodeList(Answer):
    nodes: list[NodeReport]


class SelfTest(Answer):
    """Each item's ping answer, in order, and how many each node answered."""

    results: list[Pong]
    nodes: dict[str, int]


class Deployed(Answer):
    """201: the version is stored; `activated` says whether it became the active one, `activation` why."""

    name: str
    version: str
    activated: bool
    active_version: str | None
    activation: str
    sha256: str
    size: int
    signature: ModelSchema
    runtime: RuntimeChoice  # what the nodes run it under, and why
    nodes_loaded: list[str]
    nodes_failed: dict[str, str]  # node -> the error it answered


class ModelView(Answer):
    """A model: its active version (null while none is) and the manifest of every version, oldest first."""

    name: str
    active_version: str | None
    versions: list[Manifest]


class ModelList(Answer):
    models: list[ModelView]


class Switched(Answer):
    """An activation or a rollback: the version now active and the nodes that have it loaded."""

    name: str
    active_version: str
    nodes_loaded: list[str]


class Deleted(Answer):
    name: str
    deleted_versions: list[str]
    nodes_unloaded: list[str]


class Prediction(Answer):
    """One prediction per row (a list of class probabilities per row with `output=predict_proba`)."""

    model: str
    version: str
    predictions: list[Any]
    node: str  # "cache" when the prediction cache answered
