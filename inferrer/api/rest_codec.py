"""Predict request bodies: parsed once with orjson, shapes checked with numpy, before any upstream call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from artifacts.schema import OUTPUTS, ModelSchema
from inferrer.dataplane.rows import read_rows
from inferrer.errors import InvalidInput
from wire.errors import parse_json_object

_CELL = {"type": ["number", "null"]}  # null: a missing value, for pipelines that impute
_FIELD = {"type": ["number", "string", "boolean", "null"]}  # records may carry text columns
# What the body can say before the model is known. The model decides the rest at run time (422):
# how many values a row has (its n_features), the names a record maps (its feature names; records
# only for a model fitted with names), and whether it offers predict_proba.
PREDICT_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "instances": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "array", "minItems": 1, "items": _CELL},
        },
        "records": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "minProperties": 1, "additionalProperties": _FIELD},
        },
        "output": {"type": "string", "enum": OUTPUTS, "default": "predict"},
    },
    "oneOf": [{"required": ["instances"]}, {"required": ["records"]}],  # exactly one of them
    "additionalProperties": False,
}


@dataclass(frozen=True)
class PredictRequest:
    rows: np.ndarray  # a float matrix, or a table for records (see inferrer/dataplane/columns.py)
    output: str


def parse_predict_body(raw: bytes, signature: ModelSchema, max_rows: int) -> PredictRequest:
    body = parse_json_object(raw)
    unknown = set(body) - {"instances", "records", "output"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}")
    output = body.get("output", "predict")
    if not isinstance(output, str):
        raise InvalidInput(f'"output" must be one of {", ".join(OUTPUTS)}')
    return PredictRequest(read_rows(body, signature, max_rows), output)
