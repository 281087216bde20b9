"""A partition's rows: features picked by name (other columns carried, never fed), bad rows named."""

from __future__ import annotations

import orjson

from artifacts.schema import ModelSchema
from datafiles.rows import output_header, parse_rows, render_rows

NAMED = ModelSchema(
    n_features=2, feature_names=["a", "b"], classes=[0, 1], outputs=["predict", "predict_proba"]
)
PLAIN = ModelSchema(n_features=2, outputs=["predict"])


def _numbered(*lines: bytes) -> list[tuple[int, bytes]]:
    return list(enumerate(lines, start=1))


def test_named_features_are_picked_from_json_objects_and_the_rest_carried() -> None:
    rows, bad = parse_rows(
        _numbered(b'{"id": 7, "b": 2.5, "a": 1, "label": 1}', b'{"id": 8, "a": "x", "b": null}'),
        "jsonl", None, NAMED,
    )  # fmt: skip
    assert bad == []
    assert [r.features for r in rows] == [[1, 2.5], ["x", None]]  # label and id never fed
    out = render_rows(rows, "jsonl", {"predict": [1, 0], "predict_proba": [[0.2, 0.8], [0.9, 0.1]]})
    first = orjson.loads(out.splitlines()[0])
    assert first == {"id": 7, "b": 2.5, "a": 1, "label": 1, "prediction": 1, "probabilities": [0.2, 0.8]}


def test_csv_rows_by_header_keep_their_line_verbatim() -> None:
    header = ["id", "a", "b", "label"]
    lines = _numbered(b'7,1.5,"x, y",1', b"8,2,,0")
    rows, bad = parse_rows(lines, "csv", header, NAMED)
    assert bad == []
    assert [r.features for r in rows] == [[1.5, "x, y"], [2.0, None]]
    out = render_rows(rows, "csv", {"predict": ["yes", "no"], "predict_proba": [[0.25, 0.75], [1.0, 0.0]]})
    assert out.splitlines() == [b'7,1.5,"x, y",1,yes,0.25,0.75', b"8,2,,0,no,1.0,0.0"]
    assert output_header(header, ["predict", "predict_proba"], [0, 1]) == [
        *header, "prediction", "probability_0", "probability_1",
    ]  # fmt: skip


def test_a_model_without_feature_names_takes_the_row_as_its_vector() -> None:
    rows, bad = parse_rows(_numbered(b"[1, 2]", b"[1, 2, 3]", b'{"x": 1, "y": 2}'), "jsonl", None, PLAIN)
    assert [r.features for r in rows] == [[1.0, 2.0], [1.0, 2.0]]
    assert bad == [(2, "expected 2 features, got 3")]
    out = render_rows(rows, "jsonl", {"predict": [0, 1]})
    assert orjson.loads(out.splitlines()[0]) == {"instance": [1, 2], "prediction": 0}


def test_bad_rows_are_named_by_line_with_their_reason() -> None:
    lines = _numbered(b"not json", b"42", b'{"a": 1}', b'{"a": [1], "b": 2}', b'{"a": 1, "b": 2}')
    rows, bad = parse_rows(lines, "jsonl", None, NAMED)
    assert [r.line for r in rows] == [5]
    assert bad == [
        (1, "not a JSON value"),
        (2, "each line must be a JSON object or array"),
        (3, "missing feature 'b'"),
        (4, "feature values must be numbers, strings, booleans or null"),
    ]
    plain_rows, plain_bad = parse_rows(
        _numbered(b'["a", 1]', b"[1e999, 1]", b"[true, 1]"), "jsonl", None, PLAIN
    )
    assert plain_rows == [] and [line for line, _ in plain_bad] == [1, 2, 3]
    csv_rows, csv_bad = parse_rows(_numbered(b"1,2,3", b"\xff,1"), "csv", ["a", "b"], PLAIN)
    assert csv_rows == [] and csv_bad == [
        (1, "3 fields where the header has 2"),
        (2, "not one CSV record of UTF-8 text"),
    ]


def test_csv_rows_written_as_json_lines_are_objects_of_their_cells() -> None:
    rows, bad = parse_rows(_numbered(b"x1,1.5,2", b"x2,3,4"), "csv", ["id", "a", "b"], NAMED)
    assert bad == []
    out = render_rows(rows, "jsonl", {"predict": [1, 0]})
    assert [orjson.loads(line) for line in out.splitlines()] == [
        {"id": "x1", "a": 1.5, "b": 2.0, "prediction": 1},
        {"id": "x2", "a": 3.0, "b": 4.0, "prediction": 0},
    ]
