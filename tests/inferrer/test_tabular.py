from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from artifacts.formats import ArtifactFormat
from artifacts.manifest import Manifest
from artifacts.schema import ModelSchema
from inferrer.api.csv_codec import parse_csv_rows, render_csv
from inferrer.dataplane.prediction import check_request
from inferrer.errors import InvalidInput, PayloadTooLarge

NAMED = ModelSchema(n_features=2, feature_names=["a", "b"], outputs=["predict", "predict_proba"])
UNNAMED = ModelSchema(n_features=2, outputs=["predict"])
TEXT = ModelSchema(n_features=3, feature_names=["age", "income", "city"], outputs=["predict"])


def test_csv_rows_with_and_without_header() -> None:
    assert parse_csv_rows(b"1,2\n3,4\n", UNNAMED, 10).tolist() == [[1, 2], [3, 4]]
    reordered = parse_csv_rows(b"b,a\n2,1\n\n", NAMED, 10)
    assert reordered.tolist() == [[1, 2]]
    missing = parse_csv_rows(b"1,\n", UNNAMED, 10)
    assert np.isnan(missing[0, 1])
    # A model with feature names gets a table either way: without a header, in the fitted order.
    assert parse_csv_rows(b"1,\n", NAMED, 10).tolist() == [[1.0, None]]
    assert parse_csv_rows(b"52,7.5,oslo\n", TEXT, 10).tolist() == [[52.0, 7.5, "oslo"]]
    # Any line break, a quoted one inside a cell included.
    assert parse_csv_rows(b'1,2\r3,"4\r\n"\r\n', UNNAMED, 10).tolist() == [[1, 2], [3, 4]]


def test_csv_with_a_header_becomes_a_table_of_numbers_and_text() -> None:
    body = b"city,income,age\noslo,7.5,52\n0150,,1\n,8,\n"
    table = parse_csv_rows(body, TEXT, 10)
    assert table.dtype == object
    # Cell by cell (datafiles.rows.csv_cell): "0150", a code with its zeros, stays text.
    assert table.tolist() == [[52.0, 7.5, "oslo"], [1.0, None, "0150"], [None, 8.0, None]]


@pytest.mark.parametrize(
    ("body", "schema", "words"),
    [
        (b"", NAMED, "no rows"),
        (b"a,b\n", NAMED, "header but no rows"),
        (b"1,2,3\n", NAMED, "expected 2 columns per row, got 3"),
        (
            b"a,c\n1,2\n",
            NAMED,
            r"does not match the model's features: missing features \['b'\], unknown features \['c'\]",
        ),
        (b"a,b,c\n1,2,3\n", NAMED, r"unknown features \['c'\]"),
        (b"a,b\n1,2\n", UNNAMED, "without feature names"),
        (b"1,2\n1,x\n", UNNAMED, "must be numbers"),
        (b"\xff\xfe", NAMED, "UTF-8"),
        (b"1," + b"9" * 200_000 + b"\n", UNNAMED, "does not parse"),  # past the csv module's field limit
    ],
)
def test_bad_csv_names_the_problem(body: bytes, schema: ModelSchema, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        parse_csv_rows(body, schema, 10)


def test_csv_row_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_csv_rows(b"1,2\n" * 3, UNNAMED, 2)


def test_csv_answers() -> None:
    assert render_csv([0, 1]) == b"0\n1\n"
    assert render_csv([[0.25, 0.75]]) == b"0.25,0.75\n"


def _manifest(signature: ModelSchema) -> Manifest:
    return Manifest(
        name="m", version="1", format=ArtifactFormat.SKOPS, sha256="0" * 64, size=1,
        created=datetime.now(UTC), signature=signature,
    )  # fmt: skip


def test_requests_are_checked_against_the_schema_naming_both_shapes() -> None:
    check_request(_manifest(NAMED), np.zeros((3, 2)), ["predict", "predict_proba"])
    with pytest.raises(InvalidInput, match=r"expected shape \[rows, 2\].*got \[3, 4\]"):
        check_request(_manifest(NAMED), np.zeros((3, 4)), ["predict"])
    with pytest.raises(InvalidInput, match="offers"):
        check_request(_manifest(UNNAMED), np.zeros((1, 2)), ["predict_proba"])
