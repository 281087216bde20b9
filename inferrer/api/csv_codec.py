"""text/csv predict bodies and answers: one row per instance, a header when the model has names."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from artifacts.schema import ModelSchema
from datafiles.rows import csv_cell
from inferrer.dataplane.columns import as_table, check_columns
from inferrer.dataplane.rows import check_row_count
from inferrer.errors import InvalidInput


def parse_csv_rows(raw: bytes, signature: ModelSchema, max_rows: int) -> np.ndarray:
    """Rows of numbers in the fitted order; for models fitted with feature names, a table: after a
    header, columns in any order, without one the fitted order; text allowed. Cells are typed as in
    jobs and watches (datafiles.rows.csv_cell): blank is missing."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("a text/csv body must be UTF-8") from None
    try:  # newline="": the csv module reads quoted line breaks itself
        lines = [row for row in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in row)]
    except csv.Error as exc:  # e.g. a line break or NUL where the format allows none
        raise InvalidInput(f"the CSV body does not parse: {exc}") from None
    if not lines:
        raise InvalidInput("the CSV body has no rows")
    names = signature.feature_names
    if names is not None:  # a header when the first row names a fitted feature; else the fitted order
        has_header = bool({cell.strip() for cell in lines[0]} & set(names))
        return _table(
            lines[0] if has_header else names, lines[1:] if has_header else lines, signature, max_rows
        )
    if not _is_numeric_row(lines[0]):
        raise InvalidInput("this model was fitted without feature names: send CSV rows without a header")
    _check_shape(lines, signature.n_features, max_rows)
    cells = [[csv_cell(c) for c in row] for row in lines]
    word = next((c for row in cells for c in row if isinstance(c, str)), None)
    if word is not None:
        raise InvalidInput(f"CSV values must be numbers: {word!r} is not one")
    return np.array([[np.nan if c is None else c for c in row] for row in cells], dtype=float)


def _is_numeric_row(row: list[str]) -> bool:
    return not any(isinstance(csv_cell(cell), str) for cell in row)


def _check_shape(lines: list[list[str]], n_features: int, max_rows: int) -> None:
    check_row_count(len(lines), n_features, max_rows)
    widths = {len(row) for row in lines}
    if widths != {n_features}:
        got = ", ".join(str(w) for w in sorted(widths))
        raise InvalidInput(f"expected {n_features} columns per row, got {got}")


def _table(
    header_row: list[str], lines: list[list[str]], signature: ModelSchema, max_rows: int
) -> np.ndarray:
    names = signature.feature_names
    assert names is not None
    header = [cell.strip() for cell in header_row]
    check_columns(header, names, "the CSV header does not match the model's features")
    if not lines:
        raise InvalidInput("the CSV body has a header but no rows")
    _check_shape(lines, signature.n_features, max_rows)
    by_name = {name: [csv_cell(row[i]) for row in lines] for i, name in enumerate(header)}
    return as_table([by_name[name] for name in names], names)


def render_csv(values: list[Any]) -> bytes:
    """One line per instance: a label or value, or comma-separated probabilities."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for value in values:
        writer.writerow(value if isinstance(value, list) else [value])
    return out.getvalue().encode()
