"""The bulk path of a partition reads and writes exactly what the row-by-row path would, and leaves
to it every chunk where the two could differ."""

from __future__ import annotations

import codecs
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from artifacts.schema import ModelSchema
from datafiles.columnar import read_features, render_lines
from datafiles.rows import parse_rows, render_rows

NAMED = ModelSchema(n_features=2, feature_names=["a", "b"], outputs=["predict", "predict_proba"])
UNNAMED = ModelSchema(n_features=3, outputs=["predict"])
HEADER = ["id", "a", "b"]


def numbered(*lines: bytes) -> list[tuple[int, bytes]]:
    return list(enumerate(lines, start=1))


def features_of(found: Any) -> list[list[float]]:
    matrix = found.to_numpy() if isinstance(found, pd.DataFrame) else found
    return np.asarray(matrix, dtype=np.float64).tolist()


PLAIN = [
    ("csv", HEADER, NAMED, numbered(b"x1,1.5,2", b"x2,-3e2,0.25", b"0150,+1,.5")),
    ("csv", None, UNNAMED, numbered(b"1,2,3", b"4.5,-0,7e-3")),
    ("jsonl", None, NAMED, numbered(b'{"id": "x", "a": 1, "b": 2.5}', b'{"b":-1,"a":3e2,"n":{"k":[1,2]}}  ')),
]


@pytest.mark.parametrize(("fmt", "header", "schema", "lines"), PLAIN)
def test_plain_rows_are_read_in_bulk_as_the_row_path_reads_them(
    fmt: str, header: list[str] | None, schema: ModelSchema, lines: list[tuple[int, bytes]]
) -> None:
    header = header or [f"x{i}" for i in range(schema.n_features)]
    found = read_features(lines, fmt, header, schema)
    assert found is not None
    rows, bad = parse_rows(lines, fmt, header, schema)
    assert bad == []
    assert features_of(found) == [[float(v) for v in row.features] for row in rows]
    if schema.feature_names is not None:
        assert isinstance(found, pd.DataFrame) and list(found.columns) == schema.feature_names


LABELS = {
    "text": lambda i: f"label, {i}" if i else 1,
    "integers": lambda i: [1, 0, -7][i % 3],
    "floats": lambda i: [0.1, 1e-05, -3.5e20, 2.0][i % 4],
}


@pytest.mark.parametrize("labels", sorted(LABELS))
@pytest.mark.parametrize(("fmt", "header", "schema", "lines"), PLAIN)
def test_bulk_output_is_the_row_paths_output(
    fmt: str, header: list[str] | None, schema: ModelSchema, lines: list[tuple[int, bytes]], labels: str
) -> None:
    header = header or [f"x{i}" for i in range(schema.n_features)]
    outputs: dict[str, list[Any]] = {"predict": [LABELS[labels](i) for i in range(len(lines))]}
    if "predict_proba" in schema.outputs:
        outputs["predict_proba"] = [[0.25, 0.75], [1e-07, 0.9999999], [0.0, 1.0]][: len(lines)]
    bulk = render_lines(lines, fmt, outputs)
    rows, _ = parse_rows(lines, fmt, header, schema)
    one_by_one = render_rows(rows, fmt, outputs, from_json_lines=fmt == "jsonl")
    assert bulk is not None
    assert bulk == one_by_one
    if fmt == "jsonl":  # each input object as written, with the outputs at its end
        assert [orjson.loads(line) for line in bulk.splitlines()] == [
            {**orjson.loads(raw), "prediction": p, "probabilities": q}
            for (_, raw), p, q in zip(lines, outputs["predict"], outputs["predict_proba"], strict=True)
        ]


NOT_PLAIN = {
    "a code with leading zeros": ("csv", HEADER, NAMED, [b"x,0150,1"]),
    "a blank cell": ("csv", HEADER, NAMED, [b"x,,1"]),
    "spaces around a number": ("csv", HEADER, NAMED, [b"x, 1.5,1"]),
    "text": ("csv", HEADER, NAMED, [b"x,abc,1"]),
    "a quoted cell": ("csv", HEADER, NAMED, [b'"x",1,1']),
    "too few fields": ("csv", HEADER, NAMED, [b"x,1"]),
    "an infinite cell": ("csv", HEADER, NAMED, [b"x,inf,1"]),
    "a NaN cell": ("csv", HEADER, NAMED, [b"x,nan,1"]),
    "invalid UTF-8": ("csv", HEADER, NAMED, [b"\xff,1,1"]),
    "a carriage return": ("csv", HEADER, NAMED, [b"x,1,1\rx,2,2"]),
    "a feature missing from the header": ("csv", ["id", "a"], NAMED, [b"x,1"]),
    "unnamed, other columns than features": (
        "csv",
        HEADER,
        ModelSchema(n_features=2, outputs=["predict"]),
        [b"1,2,3"],
    ),
    "a NaN literal": ("jsonl", None, NAMED, [b'{"a": 1, "b": 2, "c": NaN}']),
    "Infinity": ("jsonl", None, NAMED, [b'{"a": 1, "b": Infinity}']),
    "a feature missing": ("jsonl", None, NAMED, [b'{"a": 1}']),
    "a null feature": ("jsonl", None, NAMED, [b'{"a": 1, "b": null}']),
    "a text feature": ("jsonl", None, NAMED, [b'{"a": 1, "b": "2"}']),
    "a boolean feature": ("jsonl", None, NAMED, [b'{"a": 1, "b": true}']),
    "an array": ("jsonl", None, NAMED, [b"[1, 2]"]),
    "two objects on a line": ("jsonl", None, NAMED, [b'{"a": 1, "b": 2} {"a": 1, "b": 2}']),
    "a line that is not JSON": ("jsonl", None, NAMED, [b'{"a": 1, "b": 2,}']),
    "an escape": ("jsonl", None, NAMED, [b'{"a": 1, "b": 2, "c": "\\ud800"}']),
    "a prediction already there": ("jsonl", None, NAMED, [b'{"a": 1, "b": 2, "prediction": 0}']),
    "JSON lines of a model without names": ("jsonl", None, UNNAMED, [b'{"a": 1, "b": 2, "c": 3}']),
    "a byte order mark": ("jsonl", None, NAMED, [b'{"a": 1, "b": 2}']),
    "an integer past 2**53": ("jsonl", None, NAMED, [b'{"a": 1152921573326323713, "b": 2}']),
}


@pytest.mark.parametrize("case", sorted(NOT_PLAIN))
def test_rows_the_two_paths_could_read_differently_are_left_to_the_row_path(case: str) -> None:
    fmt, header, schema, lines = NOT_PLAIN[case]
    good = {"csv": b"y,1,2", "jsonl": b'{"a": 3, "b": 4}'}[fmt]
    first = (codecs.BOM_UTF8 + lines[0],) if case == "a byte order mark" else (good, *lines)
    assert read_features(numbered(*first), fmt, header, schema) is None


def test_an_output_with_a_line_break_is_left_to_the_row_writer() -> None:
    lines = numbered(b"x,1,2", b"y,3,4")
    assert render_lines(lines, "csv", {"predict": ["two\nlines", "one"]}) is None
