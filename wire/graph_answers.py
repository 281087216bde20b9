"""The bodies of the inference-graph routes (inferrer/api/graphs.py), as the OpenAPI document
declares them: a graph's plan (what a dry run answers and what a stored version keeps), its
versions, and a graph prediction with its optional trace."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from wire.openapi import Answer


class PlannedCall(Answer):
    """One model a step calls: the version it is pinned to (or follows), and where it is ready."""

    member: str  # the step's name, or the ensemble member's
    model: str
    version: str  # the version it runs now
    follow: Literal["active"] | None
    nodes_ready: list[str] | None  # nodes with this version loaded (a dry run asks them); None: not asked


class PlannedBranch(Answer):
    branch: str
    when: dict[str, Any] | None  # a switch case's condition, as written
    weight: float | None  # a split branch's share
    stages: list[PlannedStep]


class PlannedStep(Answer):
    step: str
    kind: Literal["model", "ensemble", "switch", "split", "select"]
    path: str  # where the document defines it: steps[2]
    inputs: list[str]  # 'request', or the steps whose outputs are joined, in order
    output: str  # the model output or the ensemble's combination
    width: int | None  # columns per row it answers; None: known only when it answers
    columns: list[str] | None
    calls: list[PlannedCall]  # run concurrently (an ensemble's members); [] for no model call
    on: str | None = None  # a switch: the step whose output routes the rows
    branches: list[PlannedBranch] = Field(default_factory=list)


class GraphPlan(Answer):
    """A graph as it would run: stages in order, what runs in parallel, the pinned versions."""

    graph: str
    version: str | None  # None: a dry run, nothing stored
    output: str  # the step that answers
    request_width: int | None  # values per row a request sends; None where no model reads it alone
    stages: list[PlannedStep]


class GraphVersion(Answer):
    graph: str
    version: str
    created: float  # epoch seconds
    active: bool
    document: dict[str, Any]  # as it was deployed
    pins: dict[str, str]  # step or member -> the model version pinned for it


class GraphView(Answer):
    graph: str
    active_version: str
    versions: list[GraphVersion]


class GraphDeleted(Answer):
    graph: str
    deleted_versions: list[str]


class StepTrace(Answer):
    step: str
    model: str | None
    version: str | None
    node: str | None
    rows: int
    ms: float


class GraphPrediction(Answer):
    graph: str
    version: str
    predictions: list[Any]
    branches: dict[str, str] = Field(default_factory=dict)  # split step -> the branch this request took
    trace: list[StepTrace] | None = None


PlannedBranch.model_rebuild()
