"""A partition's rows: read from JSON lines or CSV, turned into what the model takes, and written back
with their predictions.

For a model fitted with feature names, the names pick the features out of each row, and every other
column (an id, a label) is carried to the output but never fed to the model. Otherwise the row is
the feature vector: a JSON array, or every CSV column. A row that cannot be read, or lacks a
feature, is a bad row with its line number and reason.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from artifacts.schema import ModelSchema

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Row:
    line: int  # numbered from 1 within its partition
    raw: bytes  # the line as read: a CSV output row repeats it verbatim
    values: dict[str, Any] | list[Any]  # a JSON object or array; a CSV record as {column: text}
    features: list[Any]  # in the model's order


BadRow = tuple[int, str]  # (line, reason)


def parse_rows(
    lines: list[tuple[int, bytes]], fmt: str, header: list[str] | None, schema: ModelSchema
) -> tuple[list[Row], list[BadRow]]:
    rows: list[Row] = []
    bad: list[BadRow] = []
    for line, raw in lines:
        try:
            values = _json_value(raw) if fmt == "jsonl" else _csv_record(raw, header or [])
            rows.append(Row(line, raw, values, _features(values, schema)))
        except ValueError as exc:
            bad.append((line, str(exc)))
    return rows, bad


def parse_records(
    records: list[dict[str, Any]], schema: ModelSchema, first_line: int = 1
) -> tuple[list[Row], list[BadRow]]:
    """Rows already read as records (a parquet row group), numbered from `first_line`."""
    rows: list[Row] = []
    bad: list[BadRow] = []
    for line, record in enumerate(records, start=first_line):
        raw = orjson.dumps(record, default=str)
        try:
            rows.append(Row(line, raw, record, _features(record, schema)))
        except ValueError as exc:
            bad.append((line, str(exc)))
    return rows, bad


def _json_value(raw: bytes) -> dict[str, Any] | list[Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("not a JSON value") from None
    if not isinstance(value, dict | list):
        raise ValueError("each line must be a JSON object or array")
    return value


def _csv_record(raw: bytes, header: list[str]) -> dict[str, Any]:
    try:
        (fields,) = list(csv.reader([raw.decode()]))
    except (UnicodeDecodeError, csv.Error, ValueError):
        raise ValueError("not one CSV record of UTF-8 text") from None
    if len(fields) != len(header):
        raise ValueError(f"{len(fields)} fields where the header has {len(header)}")
    return dict(zip(header, (csv_cell(f) for f in fields), strict=True))


_CODE = re.compile(r"\s*[+-]?0\d")  # "0150", "007": a code (zip, id) written with its zeros


def csv_cell(text: str) -> float | str | None:
    """How every path types a CSV cell (a predict body, a job's or a watch's file): None for an
    empty or blank cell (a missing value), a number where the text, spaces around it aside, is one
    (but not a code with leading zeros, such as "0150"), else the text as written. Cell by cell, so
    that a row is typed the same whatever rows share its request or partition."""
    if not text.strip():
        return None
    if _CODE.match(text):
        return text
    try:
        return float(text)
    except ValueError:
        return text


def _features(values: dict[str, Any] | list[Any], schema: ModelSchema) -> list[Any]:
    names = schema.feature_names
    if isinstance(values, dict):
        if names is None:
            if len(values) != schema.n_features:  # a CSV row (or object) with the features only
                raise ValueError(
                    f"{len(values)} columns for a model of {schema.n_features} features fitted without "
                    "names: give exactly its features"
                )
            chosen = list(values.values())
        else:
            missing = [n for n in names if n not in values]
            if missing:
                raise ValueError(f"missing feature {missing[0]!r}")
            chosen = [values[n] for n in names]
    else:
        if len(values) != schema.n_features:
            raise ValueError(f"expected {schema.n_features} features, got {len(values)}")
        chosen = values
    if names is None:
        return [_number(v) for v in chosen]
    if not all(isinstance(v, _SCALARS) for v in chosen):
        raise ValueError("feature values must be numbers, strings, booleans or null")
    return chosen


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


OUTPUT_KEYS = frozenset({"prediction", "probabilities"})


def json_line_with(raw: bytes, prediction: Any, probabilities: list[Any] | None) -> bytes:
    """An output JSON line: the input object as written (a JSON object of at least one member), with
    `prediction` (and `probabilities`) added at its end."""
    line = raw.rstrip()[:-1] + b',"prediction":' + orjson.dumps(prediction, option=orjson.OPT_SERIALIZE_NUMPY)
    if probabilities is not None:
        line += b',"probabilities":' + orjson.dumps(probabilities, option=orjson.OPT_SERIALIZE_NUMPY)
    return line + b"}\n"


def output_header(header: list[str], outputs: Iterable[str], classes: list[Any] | None) -> list[str]:
    """A CSV output's header: the input's columns, then the prediction (and one per class)."""
    columns = [*header, "prediction"]
    if "predict_proba" in outputs:
        columns += [f"probability_{c}" for c in classes or []]
    return columns


def render_rows(
    rows: list[Row],
    fmt: str,
    outputs: dict[str, list[Any]],
    columns: list[str] | None = None,
    from_json_lines: bool = False,
) -> bytes:
    """The output lines of `rows`: each input row plus `prediction` (and `probabilities`). A CSV
    row repeats its input line verbatim; records (parquet) give their `columns`' values instead; a
    JSON line read `from_json_lines` repeats its object as written, the outputs at its end."""
    predictions = outputs["predict"]
    probabilities = outputs.get("predict_proba")
    if fmt == "jsonl":
        out = bytearray()
        for i, row in enumerate(rows):
            probability = None if probabilities is None else probabilities[i]
            if from_json_lines and isinstance(row.values, dict) and not OUTPUT_KEYS & row.values.keys():
                out += json_line_with(row.raw, predictions[i], probability)
                continue
            extra: dict[str, Any] = {"prediction": predictions[i]}
            if probability is not None:
                extra["probabilities"] = probability
            body = (
                {**row.values, **extra} if isinstance(row.values, dict) else {"instance": row.values, **extra}
            )
            out += orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        return bytes(out)
    out = bytearray()
    cells = io.StringIO()
    writer = csv.writer(cells, lineterminator="")
    for i, row in enumerate(rows):
        cells.seek(0)
        cells.truncate()
        ours = [predictions[i], *(probabilities[i] if probabilities is not None else [])]
        if columns is not None and isinstance(row.values, dict):
            writer.writerow([*(row.values.get(column) for column in columns), *ours])
            out += cells.getvalue().encode() + b"\n"
            continue
        writer.writerow(ours)
        out += row.raw + b"," + cells.getvalue().encode() + b"\n"  # the input line verbatim, then ours
    return bytes(out)
