"""What a node predicts on: a float matrix, or a DataFrame of the fitted columns."""

from __future__ import annotations

import numpy as np
import pytest

from artifacts.schema import ModelSchema
from modelhost.errors import InvalidInput
from modelhost.inputs import as_frame, as_rows

TEXT = ModelSchema(n_features=3, feature_names=["age", "income", "city"], outputs=["predict"])


def test_columns_make_a_dataframe_with_numbers_text_and_nan() -> None:
    frame = as_frame([[52, 7.5, "oslo"], [None, 8.0, None]], ["age", "income", "city"], TEXT)
    assert list(frame.columns) == ["age", "income", "city"]
    assert frame["age"].dtype.kind == "f" and frame["income"].dtype.kind == "f"
    assert frame["city"].iloc[0] == "oslo"
    assert np.isnan(frame["age"].iloc[1]) and frame["city"].isna().iloc[1]


def test_a_column_of_nulls_only_is_nan_whatever_its_kind() -> None:
    frame = as_frame([[None, 7.5, None]], ["age", "income", "city"], TEXT)
    assert frame["city"].dtype == object and np.isnan(frame["city"].iloc[0])
    assert np.isnan(frame["age"].iloc[0])


@pytest.mark.parametrize(
    ("instances", "columns", "schema", "words"),
    [
        ([[1, 2, "a"]], ["income", "age", "city"], TEXT, "fitted order"),
        ([[1, 2]], ["age", "income"], TEXT, "fitted order"),
        ([[1, 2, "a"]], ["age", "income", "city"], ModelSchema(n_features=3, outputs=["predict"]), "without"),
        ([], ["age", "income", "city"], TEXT, "non-empty"),
        ([[1, 2]], ["age", "income", "city"], TEXT, "3 values"),
        ([[1, 2, ["a"]]], ["age", "income", "city"], TEXT, "numbers, strings"),
    ],
)
def test_bad_tables_are_refused(
    instances: list[list[object]], columns: list[str], schema: ModelSchema, words: str
) -> None:
    with pytest.raises(InvalidInput, match=words):
        as_frame(instances, columns, schema)


@pytest.mark.parametrize(
    ("instances", "words"),
    [
        ([], "non-empty"),
        ([[1, 2], [3]], "equal length"),
        ([[10**400, 1]], "equal length"),  # an integer beyond any float: refused, not a server error
        ([[1, 2, 3]], "expected 2 features per row, got 3"),
    ],
)
def test_bad_rows_are_refused(instances: list[list[object]], words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        as_rows(instances, 2)
