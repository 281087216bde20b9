"""A stored model version's manifest: what the repository keeps and what nodes are told to load."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from artifacts.formats import ArtifactFormat
from artifacts.schema import JsonInt, ModelSchema

SHA256_PATTERN = r"^[0-9a-f]{64}$"  # an artifact's digest, lowercase hex
# A name that becomes a directory name (a model, a version, a job, a watch): 1-64 allow-listed
# characters, never "." or "..". Written without a lookahead, which neither pydantic's regex engine
# nor every JSON Schema validator takes: some character that is not a dot, or three dots or more.
SEGMENT_PATTERN = r"^(?:[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*|\.{3,})$"
SEGMENT_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": SEGMENT_PATTERN}
_SEGMENT = re.compile(SEGMENT_PATTERN)


def is_path_segment(value: str) -> bool:
    """Model names and versions become directory names: allow-listed characters, never . or .."""
    return 1 <= len(value) <= 64 and _SEGMENT.fullmatch(value) is not None


def _check_segment(value: str) -> str:
    if not is_path_segment(value):
        raise ValueError("use 1-64 of A-Z a-z 0-9 . _ - (not '.' or '..')")
    return value


Segment = Annotated[str, AfterValidator(_check_segment), WithJsonSchema(SEGMENT_SCHEMA)]


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
