"""A stored model version's manifest: what the repository keeps and what nodes are told to load."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from artifacts.formats import ArtifactFormat
from artifacts.names import SHA256_PATTERN, Segment
from artifacts.schema import JsonInt, ModelSchema

__all__ = ["Manifest"]


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)
