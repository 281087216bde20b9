"""What a job or a watch predicts with: a model version, or an inference graph's version, whose
rows are read as the graph's first model reads them (its feature count, its feature names)."""

from __future__ import annotations

from dataclasses import dataclass

from artifacts.manifest import Manifest
from inferrer.errors import InvalidInput
from inferrer.graphs.service import GraphService
from inferrer.state.repository import ModelRepository


@dataclass(frozen=True)
class Target:
    reader: Manifest  # the model itself, or the graph's first model
    graph: str | None = None
    graph_version: str | None = None

    @property
    def name(self) -> str:
        return self.graph or self.reader.name

    @property
    def version(self) -> str:
        return self.graph_version or self.reader.version


async def resolve_target(
    repository: ModelRepository,
    graphs: GraphService,
    model: str | None,
    graph: str | None,
    version: str | None,
    prediction: str,
) -> Target:
    """The model version (the active one by default) and its output checked, or the graph's."""
    if graph is None:
        assert model is not None
        manifest = repository.get(model, version)
        if prediction not in manifest.signature.outputs:
            raise InvalidInput(
                f"model {manifest.name!r} offers {manifest.signature.outputs}, not {prediction!r}"
            )
        return Target(manifest)
    deployed = await graphs.deployed(graph, version)
    if prediction != "predict":
        raise InvalidInput(f"graph {graph!r} answers its output step: prediction must be predict")
    reader = graphs.request_reader(deployed)
    if reader is None:
        raise InvalidInput(
            f"graph {graph!r} sends its request to no model by itself: a job cannot read its rows"
        )
    return Target(reader, graph, deployed.record.version)
