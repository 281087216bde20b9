"""A stored graph version, and the same version ready to run: its steps read, checked against the
models as deployed now (a step that follows the active version may meet another version than at
deploy), and wired."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferrer.graphs.reading import read_graph
from inferrer.graphs.spec import REQUEST, GraphSpec
from inferrer.graphs.traversal import every_stage
from inferrer.graphs.validation import Wiring, check_graph
from inferrer.state.repository import ModelRepository
from wire.graph_answers import GraphPlan, PlannedCall


@dataclass(frozen=True)
class GraphRecord:
    """A graph version as the store keeps it: the document as deployed and the versions pinned."""

    name: str
    version: str
    document: dict[str, Any]
    pins: dict[str, str]  # step or member -> model version
    created: float
    active: bool


@dataclass(frozen=True)
class DeployedGraph:
    record: GraphRecord
    spec: GraphSpec
    plan: GraphPlan
    wiring: Wiring
    # The model call that reads the request first, by itself: what a request's rows are read
    # against (its feature count, its feature names); None when no model reads it alone.
    reader: PlannedCall | None

    @property
    def output(self) -> str:
        return self.plan.output


@dataclass(frozen=True)
class BrokenGraph:
    """A stored version that no longer checks (a model it follows changed shape): it answers its
    problems instead of predictions until it is deployed again."""

    record: GraphRecord
    problems: list[str]


def ready_to_run(record: GraphRecord, repository: ModelRepository) -> DeployedGraph | BrokenGraph:
    spec, problems = read_graph(record.document)
    if spec is None or problems:
        return BrokenGraph(record, [f"{p.path}: {p.message}" for p in problems])
    checked = check_graph(spec, repository, record.pins)
    if checked.plan is None:
        return BrokenGraph(record, [f"{p.path}: {p.message}" for p in checked.problems])
    plan = checked.plan.model_copy(update={"version": record.version})
    readers = (s.calls[0] for s in every_stage(plan.stages) if s.inputs == [REQUEST] and s.calls)
    return DeployedGraph(record, spec, plan, checked.wiring, next(readers, None))
