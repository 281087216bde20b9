"""Inputs by feature name (JSON records, CSV with a header, V2 tensors per feature) for models fitted
with feature names: the given columns checked against the fitted ones, the values put in a table.

A table is an object matrix of JSON scalars (numbers, strings, booleans, None for missing), one column
per fitted feature in the fitted order. Nodes get it as rows plus the column names and predict on a
pandas DataFrame, so text columns reach a ColumnTransformer as text. A float matrix (`instances`) is
never a table: it stays a float matrix all the way, the fast path of purely numeric models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferrer.errors import InvalidInput
from wire.json import JSON_SCALARS


def is_table(rows: np.ndarray) -> bool:
    return rows.dtype.kind == "O"


def check_columns(given: Sequence[str], names: list[str], what: str) -> None:
    """InvalidInput naming the missing, unknown and repeated columns unless `given` names each fitted
    feature exactly once, in any order."""
    present = set(given)
    missing = [name for name in names if name not in present]
    unknown = sorted(present - set(names))
    repeated = sorted(name for name, count in Counter(given).items() if count > 1)
    problems = [
        f"{label} features {columns}"
        for label, columns in (("missing", missing), ("unknown", unknown), ("repeated", repeated))
        if columns
    ]
    if problems:
        raise InvalidInput(f"{what}: {', '.join(problems)}")


def as_table(columns: list[list[Any]], names: list[str]) -> np.ndarray:
    """The rows x features table of one list of values per fitted feature, in the fitted order."""
    lengths = {len(values) for values in columns}
    if len(lengths) != 1:
        raise InvalidInput("every feature must have the same number of rows")
    table = np.empty((lengths.pop(), len(names)), dtype=object)
    for j, (name, values) in enumerate(zip(names, columns, strict=True)):
        if not all(isinstance(value, JSON_SCALARS) for value in values):
            raise InvalidInput(f"feature {name!r}: values must be numbers, strings, booleans or null")
        table[:, j] = values
    return table
