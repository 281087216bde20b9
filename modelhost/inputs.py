"""What a node predicts on: a float matrix from `instances`, or, when `columns` come with them, a
pandas DataFrame of the fitted columns, for models fitted with feature names (text beside numbers)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from artifacts.schema import ModelSchema
from modelhost.errors import InvalidInput
from wire.json import JSON_SCALARS


def as_rows(instances: Any, n_features: int) -> np.ndarray:
    """A 2-D float matrix with `n_features` columns, or InvalidInput saying what is wrong."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("instances must be a non-empty list of rows")
    try:
        rows = np.asarray(instances, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):  # Overflow: an integer beyond any float
        raise InvalidInput("instances must be rows of numbers of equal length") from None
    if rows.ndim != 2:
        raise InvalidInput(f"instances must be a list of rows; got an array of {rows.ndim} dims")
    if rows.shape[1] != n_features:
        raise InvalidInput(f"expected {n_features} features per row, got {rows.shape[1]}")
    return rows


def as_frame(instances: Any, columns: list[str], signature: ModelSchema) -> pd.DataFrame:
    """Rows of JSON values under `columns`, which must be the fitted features in their fitted order
    (the inferrer puts them so). A column of numbers is numeric, one with text is text, and null is
    NaN in either (as pandas.read_csv reads an empty cell); a column of nulls only stays an object
    column, which numeric steps and encoders alike read as missing. So a row's prediction does not
    depend on the rows it was batched with."""
    names = signature.feature_names
    if names is None:
        raise InvalidInput("this model was fitted without feature names: send instances without columns")
    if columns != names:
        raise InvalidInput(
            f"columns must be the model's features in their fitted order {names}, got {columns}"
        )
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("instances must be a non-empty list of rows")
    for row in instances:
        if not isinstance(row, list) or len(row) != len(names):
            raise InvalidInput(f"each instance must be a list of {len(names)} values, one per column")
        if not all(isinstance(value, JSON_SCALARS) for value in row):
            raise InvalidInput("values must be numbers, strings, booleans or null")
    return pd.DataFrame(instances, columns=names, dtype=object).infer_objects().fillna(np.nan)
