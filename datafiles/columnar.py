"""A partition's rows read into columns with Arrow and written back with their predictions, in bulk,
when the rows are plain: the fast path of a batch job, taken chunk by chunk.

Plain means that the row-by-row path (datafiles/rows.py) would read every row of the chunk as good
and give the model the same numbers:

- CSV: no quote, no carriage return, unique header names, UTF-8; every feature cell a number as
  both Python and Arrow read it (no blank cell, no code with leading zeros such as "0150", no
  spaces around it, finite);
- JSON lines (models fitted with feature names): one object per line, UTF-8, no NaN or Infinity
  literals or \\u escapes anywhere, every feature a finite number.

Any other chunk returns None here and takes the row-by-row path, which names the bad rows. The
output is what that path writes: a CSV row is its input line verbatim, then the outputs; a JSON line
is its input object as written with `prediction` (and `probabilities`) added at its end.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from artifacts.schema import ModelSchema
from datafiles.rows import json_line_with

Lines = Sequence[tuple[int, bytes]]  # (line number, text without its line end)
Features: TypeAlias = np.ndarray | pd.DataFrame
_EXACT = 2.0**53  # below it every integer is a float64 (NaN and infinity are not below it)
_CODE = r"^[+-]?0\d"  # as datafiles.rows reads a cell: "0150" stays text
_JSON_REFUSED = (b"NaN", b"Infinity", b"\\u", b'"prediction"', b'"probabilities"')


def read_features(lines: Lines, fmt: str, header: list[str] | None, schema: ModelSchema) -> Features | None:
    """The chunk's features as the model takes them (a float matrix, or a frame of the fitted
    names), or None where the row-by-row path must read it."""
    data = b"\n".join(raw for _, raw in lines)
    if data.startswith(codecs.BOM_UTF8):  # Arrow skips it, the row path reads it as text
        return None
    try:
        data.decode()
    except UnicodeDecodeError:
        return None
    if fmt == "csv":
        table = _csv_table(data, header or [], schema)
    elif fmt == "jsonl" and schema.feature_names is not None:
        table = _json_table(data, schema.feature_names)
    else:
        return None
    if table is None or table.num_rows != len(lines):
        return None
    columns = [pc.cast(column, pa.float64()).to_numpy() for column in table.columns]
    # Finite, and exact as a float: a JSON integer past 2**53 reaches the model as an integer on the
    # row path, which a model in 32-bit floats may round otherwise.
    if not all((np.abs(column) < _EXACT).all() for column in columns):
        return None
    if schema.feature_names is None:
        return np.column_stack(columns)
    return pd.DataFrame(dict(zip(schema.feature_names, columns, strict=True)))


def _csv_table(data: bytes, header: list[str], schema: ModelSchema) -> pa.Table | None:
    if b'"' in data or b"\r" in data or len(set(header)) != len(header):
        return None
    names = schema.feature_names
    if names is None and len(header) != schema.n_features:
        return None
    wanted = header if names is None else names
    read = pa_csv.ReadOptions(column_names=header, use_threads=False)  # in the caller's thread
    convert = pa_csv.ConvertOptions(
        include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string()), strings_can_be_null=False
    )
    try:
        table = pa_csv.read_csv(io.BytesIO(data), read_options=read, convert_options=convert)
    except (pa.ArrowInvalid, KeyError):
        return None
    for column in table.columns:
        if pc.any(pc.match_substring_regex(column, _CODE)).as_py():
            return None
    try:
        return pa.table([pc.cast(column, pa.float64()) for column in table.columns], names=wanted)
    except pa.ArrowInvalid:  # a cell that is not a number: blank, text, spaces around a number
        return None


def _json_table(data: bytes, names: list[str]) -> pa.Table | None:
    if any(refused in data for refused in _JSON_REFUSED):
        return None
    schema = pa.schema([(name, pa.float64()) for name in names])
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(
            io.BytesIO(data + b"\n"), pa_json.ReadOptions(use_threads=False), parse_options=options
        )
    except pa.ArrowInvalid:  # not an object, a feature of text or booleans, a line that is not JSON
        return None
    if any(column.null_count for column in table.columns):  # a feature missing or null
        return None
    return table


def render_lines(lines: Lines, fmt: str, outputs: dict[str, list[Any]]) -> bytes | None:
    """The chunk's output lines, or None where the row-by-row writer must write them. Numbers are
    written by one dump each and the lines joined by Arrow, which lets go of the GIL: the node's
    event loop answers online predictions meanwhile."""
    predictions = outputs["predict"]
    probabilities = outputs.get("predict_proba")
    raws = pa.array([raw for _, raw in lines], pa.binary())
    if fmt == "csv":
        cells = _csv_cells(predictions, probabilities, len(lines))
        return None if cells is None else _joined(raws, b",", cells, b"\n")
    texts = _number_texts(predictions)
    if texts is None:  # text labels: written one by one, as the row path writes them
        return b"".join(
            json_line_with(raw, p, None if probabilities is None else probabilities[i])
            for i, ((_, raw), p) in enumerate(zip(lines, predictions, strict=True))
        )
    objects = pc.utf8_slice_codeunits(pc.ascii_rtrim_whitespace(raws.cast(pa.string())), 0, -1)
    parts: list[Any] = [objects.cast(pa.binary()), b',"prediction":', texts]
    if probabilities is not None:
        dumped = orjson.dumps(probabilities, option=orjson.OPT_SERIALIZE_NUMPY)  # [[a,b],[c,d]]
        parts += [b',"probabilities":[', pa.array(dumped[2:-2].split(b"],["), pa.binary()), b"]"]
    return _joined(*parts, b"}\n")


def _number_texts(values: list[Any]) -> pa.Array | None:
    """Each value as orjson writes it alone, from one dump of them all; None unless all are numbers."""
    if not all(type(value) in (int, float) for value in values):
        return None
    return pa.array(orjson.dumps(values)[1:-1].split(b","), pa.binary())


def _csv_cells(predictions: list[Any], probabilities: list[Any] | None, rows: int) -> pa.Array | None:
    """The outputs of each row as the csv module writes them, or None for a quoted line break."""
    text = io.StringIO()
    if probabilities is None:
        cells: Any = zip(predictions, strict=True)
    else:
        cells = ([p, *q] for p, q in zip(predictions, probabilities, strict=True))
    csv.writer(text, lineterminator="\n").writerows(cells)
    ours = text.getvalue().encode().split(b"\n")
    if len(ours) != rows + 1:
        return None
    return pa.array(ours[:-1], pa.binary())


def _joined(*parts: pa.Array | bytes) -> bytes:
    """The parts joined row by row (bytes repeat on every row), all rows in one string."""
    joined = pc.binary_join_element_wise(*parts, b"")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)
    first, last = offsets[joined.offset], offsets[joined.offset + len(joined)]
    return bytes(memoryview(joined.buffers()[2])[first:last])
