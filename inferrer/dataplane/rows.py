"""How rows are read from JSON: `instances` (rows of numbers) or `records` (objects mapping feature
name to value), checked against the model that reads them. Every protocol and the stream consumers
read rows this way."""

from __future__ import annotations

from typing import Any

import numpy as np

from artifacts.schema import ModelSchema
from inferrer.dataplane.columns import as_table, check_columns
from inferrer.errors import InvalidInput, PayloadTooLarge


def read_rows(body: dict[str, Any], signature: ModelSchema, max_rows: int) -> np.ndarray:
    """The rows of a body's `instances` or `records`, checked against the model that reads them."""
    if ("instances" in body) == ("records" in body):
        raise InvalidInput('give exactly one of "instances" (rows of numbers) or "records"')
    if "records" in body:
        return _records_table(body["records"], signature, max_rows)
    return _as_matrix(body["instances"], signature.n_features, max_rows)


def check_row_count(rows: int, n_features: int, max_rows: int) -> None:
    """413 for a request over the row limit (rows x features capped: see InferrerSettings)."""
    if rows > max_rows:
        raise PayloadTooLarge(
            f"{rows} rows of {n_features} features exceed the limit of {max_rows} rows per request "
            "for this model; split the request"
        )


def _as_matrix(instances: Any, n_features: int, max_rows: int) -> np.ndarray:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("instances must be a non-empty list of rows")
    check_row_count(len(instances), n_features, max_rows)
    if not all(isinstance(row, list) for row in instances):
        raise InvalidInput("each instance must be a list of numbers")
    lengths = {len(row) for row in instances}
    if lengths != {n_features}:
        got = ", ".join(str(n) for n in sorted(lengths))
        raise InvalidInput(f"expected {n_features} features per row, got {got}")
    try:
        rows = np.asarray(instances)
    except ValueError:
        raise InvalidInput("instances must be rows of numbers of equal length") from None
    if rows.dtype.kind == "O" and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
        for row in instances
        for v in row
    ):  # null stands for a missing value, for pipelines that impute
        rows = rows.astype(np.float64)
    if rows.dtype.kind not in "iuf":
        raise InvalidInput("instances must contain only numbers (or null for missing); text goes in records")
    return rows.astype(np.float64, copy=False)


def _records_table(records: Any, signature: ModelSchema, max_rows: int) -> np.ndarray:
    names = signature.feature_names
    if names is None:
        raise InvalidInput("this model was fitted without feature names: send instances")
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise InvalidInput("records must be a non-empty list of objects mapping feature name to value")
    check_row_count(len(records), signature.n_features, max_rows)
    expected = set(names)
    for i, record in enumerate(records):
        if record.keys() != expected:
            check_columns(list(record), names, f"record {i}")
    return as_table([[record[name] for record in records] for name in names], names)
