"""A stored model version's manifest: what the repository keeps and what nodes are told to load."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from artifacts.formats import ArtifactFormat
from artifacts.schema import ModelSchema


class Manifest(BaseModel):
    name: str
    version: str
    format: ArtifactFormat
    sha256: str
    size: int
    created: datetime
    signature: ModelSchema
    # skops types beyond the default list that this upload was explicitly allowed to contain.
    trusted_types: list[str] = []
    # Concurrent requests may be coalesced into one upstream call (see inferrer/batching.py).
    batching: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)
