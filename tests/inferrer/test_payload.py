from __future__ import annotations

import numpy as np
import pytest

from artifacts.schema import ModelSchema
from inferrer.api.rest_codec import parse_predict_body
from inferrer.errors import InvalidInput, MalformedRequest, PayloadTooLarge

NAMED = ModelSchema(
    n_features=2, feature_names=["a", "b"], classes=[0, 1], outputs=["predict", "predict_proba"]
)
UNNAMED = ModelSchema(n_features=2, outputs=["predict"])
TEXT = ModelSchema(n_features=3, feature_names=["age", "income", "city"], outputs=["predict"])


def test_instances_become_a_float_matrix() -> None:
    parsed = parse_predict_body(b'{"instances": [[1, 2.5], [3, null]]}', NAMED, max_rows=10)
    assert parsed.output == "predict"
    np.testing.assert_array_equal(parsed.rows, [[1.0, 2.5], [3.0, np.nan]])


def test_records_follow_the_fitted_feature_order() -> None:
    body = b'{"records": [{"b": 2, "a": 1}], "output": "predict_proba"}'
    parsed = parse_predict_body(body, NAMED, max_rows=10)
    assert parsed.rows.tolist() == [[1.0, 2.0]]
    assert parsed.output == "predict_proba"


def test_records_with_text_become_a_table_in_the_fitted_order() -> None:
    body = (
        b'{"records": [{"city": "oslo", "income": 7.5, "age": 52}, {"income": null, "age": 1, "city": null}]}'
    )
    parsed = parse_predict_body(body, TEXT, max_rows=10)
    assert parsed.rows.dtype == object
    assert parsed.rows.tolist() == [[52, 7.5, "oslo"], [1, None, None]]


@pytest.mark.parametrize(
    ("body", "schema", "error", "words"),
    [
        (b"{", NAMED, MalformedRequest, "malformed JSON"),
        (b"[]", NAMED, MalformedRequest, "JSON object"),
        (b"{}", NAMED, InvalidInput, "exactly one"),
        (b'{"instances": [[1, 2]], "records": []}', NAMED, InvalidInput, "exactly one"),
        (b'{"instances": []}', NAMED, InvalidInput, "non-empty"),
        (b'{"instances": [1, 2]}', NAMED, InvalidInput, "list of numbers"),
        (b'{"instances": [[1, 2, 3]]}', NAMED, InvalidInput, "expected 2 features per row, got 3"),
        (b'{"instances": [[1, 2], [1]]}', NAMED, InvalidInput, "got 1, 2"),
        (b'{"instances": [[1, "2"]]}', NAMED, InvalidInput, "only numbers"),
        (b'{"instances": [[1, {}]]}', NAMED, InvalidInput, "only numbers"),
        (b'{"records": [{"a": 1}]}', NAMED, InvalidInput, "missing features ['b']"),
        (b'{"records": [{"a": 1, "b": 2}]}', UNNAMED, InvalidInput, "without feature names"),
        (b'{"records": [{"a": 1, "b": 2, "c": 3}]}', NAMED, InvalidInput, "record 0: unknown features ['c']"),
        (b'{"records": [{"a": 1, "b": {}}]}', NAMED, InvalidInput, "feature 'b': values must be"),
        (b'{"records": []}', NAMED, InvalidInput, "non-empty list of objects"),
        (
            b'{"records": [{"a": 1, "b": 2}, {"a": 1, "b": 2}, {"a": 1, "b": 2}]}',
            NAMED,
            PayloadTooLarge,
            "limit",
        ),
        (b'{"instances": [[1, 2]], "extra": 1}', NAMED, InvalidInput, "unknown fields: extra"),
        (b'{"instances": [[1, 2]], "output": 3}', NAMED, InvalidInput, "output"),
        (b'{"instances": [[1, 2], [1, 2], [1, 2]]}', NAMED, PayloadTooLarge, "limit of 2"),
    ],
)
def test_bad_bodies_name_the_problem(
    body: bytes, schema: ModelSchema, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_predict_body(body, schema, max_rows=2)
