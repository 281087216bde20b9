"""text/csv predict bodies and answers: one row per instance, a header when the model has names."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from artifacts.schema import ModelSchema
from inferrer.errors import InvalidInput
from inferrer.payload import check_row_count


def parse_csv_rows(raw: bytes, signature: ModelSchema, max_rows: int) -> np.ndarray:
    """Rows of numbers (empty cells are missing values). A header row is optional for models
    fitted with feature names, and then columns may come in any order."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("a text/csv body must be UTF-8") from None
    lines = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not lines:
        raise InvalidInput("the CSV body has no rows")
    order: list[int] | None = None
    if not _is_numeric_row(lines[0]):
        order = _column_order([cell.strip() for cell in lines[0]], signature)
        lines = lines[1:]
    if not lines:
        raise InvalidInput("the CSV body has a header but no rows")
    check_row_count(len(lines), signature.n_features, max_rows)
    widths = {len(row) for row in lines}
    if widths != {signature.n_features}:
        got = ", ".join(str(w) for w in sorted(widths))
        raise InvalidInput(f"expected {signature.n_features} columns per row, got {got}")
    try:
        rows = np.array([[float(c) if c.strip() else np.nan for c in row] for row in lines])
    except ValueError as exc:
        raise InvalidInput(f"CSV values must be numbers: {exc}") from None
    return rows[:, order] if order is not None else rows


def _is_numeric_row(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row if cell.strip()]
    except ValueError:
        return False
    return True


def _column_order(header: list[str], signature: ModelSchema) -> list[int]:
    names = signature.feature_names
    if names is None:
        raise InvalidInput("this model was fitted without feature names: send CSV rows without a header")
    if sorted(header) != sorted(names):
        raise InvalidInput(f"CSV header {header} does not match the model's features {names}")
    return [header.index(name) for name in names]


def render_csv(values: list[Any]) -> bytes:
    """One line per instance: a label or value, or comma-separated probabilities."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for value in values:
        writer.writerow(value if isinstance(value, list) else [value])
    return out.getvalue().encode()
