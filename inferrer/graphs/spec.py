"""An inference graph (`apiVersion: modelfleet/v1`, `kind: InferenceGraph`) as typed steps: what
reading.py makes of a document, what validation.py checks against the deployed models, and what
execution.py runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

API_VERSION = "modelfleet/v1"
KIND = "InferenceGraph"
REQUEST = "request"  # the input every graph is sent
COMBINE = ("mean", "vote", "weighted")
ENSEMBLE_OUTPUTS = ("predict", "predict_proba")
# A switch's operators: the column's value compared with the condition's.
OPERATORS = ("equals", "not_equals", "above", "below", "at_least", "at_most", "in")
MAX_DEPTH = 4  # branches within branches
MAX_STEPS = 100  # steps and ensemble members in one graph
# A graph's name goes into the pins it holds on model versions (with a prefix and a token): shorter
# than a step's.
MAX_GRAPH_NAME = 40
STEP_KINDS = ("model", "ensemble", "switch", "split", "select")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


@dataclass(frozen=True)
class ModelRef:
    """A model a step calls: a version pinned when the graph is deployed, or the active one."""

    model: str
    version: str | None
    follow_active: bool


@dataclass(frozen=True)
class ModelStep:
    name: str
    path: str
    inputs: tuple[str, ...] | None  # None: the previous step (or the request, for the first)
    ref: ModelRef
    output: str


@dataclass(frozen=True)
class Member:
    name: str
    path: str
    ref: ModelRef


@dataclass(frozen=True)
class EnsembleStep:
    name: str
    path: str
    inputs: tuple[str, ...] | None
    combine: Literal["mean", "vote", "weighted"]
    weights: tuple[float, ...] | None
    output: Literal["predict", "predict_proba"]
    members: tuple[Member, ...]


@dataclass(frozen=True)
class Condition:
    column: int | str
    operator: str
    value: Any


@dataclass(frozen=True)
class Branch:
    name: str
    path: str
    steps: tuple[Step, ...]
    when: Condition | None = None  # a switch's case (None: its default)
    weight: float = 0.0  # a split's share


@dataclass(frozen=True)
class SwitchStep:
    name: str
    path: str
    inputs: tuple[str, ...] | None
    on: str
    cases: tuple[Branch, ...]
    default: Branch | None


@dataclass(frozen=True)
class SplitStep:
    name: str
    path: str
    inputs: tuple[str, ...] | None
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class SelectStep:
    name: str
    path: str
    inputs: tuple[str, ...] | None
    columns: tuple[int | str, ...]


Step = ModelStep | EnsembleStep | SwitchStep | SplitStep | SelectStep


@dataclass(frozen=True)
class GraphSpec:
    name: str
    steps: tuple[Step, ...]
    output: str | None  # the step that answers; None: the last
