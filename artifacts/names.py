"""The name rules, with nothing heavy imported (the launcher and the settings read them): a name
that becomes a directory name, and an artifact's digest."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

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


SEGMENT_RULE = "1-64 of A-Z a-z 0-9 . _ - (not '.' or '..')"  # what is_path_segment takes, in words


def _check_segment(value: str) -> str:
    if not is_path_segment(value):
        raise ValueError(f"use {SEGMENT_RULE}")
    return value


Segment = Annotated[str, AfterValidator(_check_segment), WithJsonSchema(SEGMENT_SCHEMA)]
