"""A stored model version's manifest: what the repository keeps and what nodes are told to load."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from artifacts.formats import ArtifactFormat
from artifacts.names import SHA256_PATTERN, Segment
from artifacts.schema import JsonInt, ModelSchema

__all__ = ["Manifest", "RuntimeChoice", "RuntimeName", "RuntimeRequest"]

# What runs a version on the nodes; what a deploy may ask for (auto: ONNX when a conversion verifies).
RuntimeName = Literal["sklearn", "onnx"]
RuntimeRequest = Literal["auto", "sklearn", "onnx"]


class RuntimeChoice(BaseModel):
    """Which runtime serves a version, and why. For a scikit-learn upload served by ONNX Runtime,
    the graph converted from it and verified against it is stored beside it (`graph_sha256`)."""

    runtime: RuntimeName
    reason: str
    # Rows both runtimes predicted at deploy, and the largest difference of their answers.
    probes: JsonInt = 0
    largest_difference: float | None = None
    graph_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    graph_size: JsonInt | None = None
    # Whether the graph takes missing values (NaN) as the model does; where the model refuses
    # them, the graph refuses them too.
    accepts_missing: bool = True


class Manifest(BaseModel):
    """Also what a node is told to warm in a sync: every field that becomes a path is checked."""

    name: Segment
    version: Segment
    format: ArtifactFormat
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: JsonInt = Field(ge=0)
    created: datetime
    signature: ModelSchema
    # skops types beyond the default list that this upload was explicitly allowed to contain.
    trusted_types: list[str] = []
    # Concurrent requests may be coalesced into one upstream call (see inferrer/dataplane/batching.py).
    batching: bool = True
    # None: stored before runtimes were chosen (its own format's runtime serves it).
    runtime: RuntimeChoice | None = None

    @property
    def compiled(self) -> RuntimeChoice | None:
        """The runtime choice when the nodes serve a graph compiled from the upload, else None."""
        return self.runtime if self.runtime is not None and self.runtime.graph_sha256 else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def served_sha256(self) -> str:
        """What nodes load and name the version by: the verified graph where one is stored, else the
        upload (a model deleted and deployed again from the same file under another runtime is
        another artifact to them)."""
        compiled = self.compiled
        return compiled.graph_sha256 if compiled is not None and compiled.graph_sha256 else self.sha256

    @property
    def served_size(self) -> int:
        """The bytes the nodes load (what a node's memory budget counts)."""
        compiled = self.compiled
        return compiled.graph_size if compiled is not None and compiled.graph_size is not None else self.size

    @property
    def runtime_name(self) -> RuntimeName:
        return "onnx" if self.compiled is not None or self.format is ArtifactFormat.ONNX else "sklearn"

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)
