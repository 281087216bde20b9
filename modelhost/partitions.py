"""A batch job's partition, in the node's batch worker process (modelhost/batch_worker.py): read
the byte range from storage, predict in bounded chunks, write the output part whole.

Rows keep their order. A chunk the model rejects as a whole is predicted row by row, so that only
the rows at fault are bad. Bad rows fail the partition (422, naming their lines) or, with
`on_bad_rows: skip`, go to the errors part with their reason while the rest is written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.formats import sha256_hex
from artifacts.schema import ModelSchema
from datafiles.columnar import read_features, render_lines
from datafiles.formats import FormatRefused, output_format
from datafiles.locations import Location, LocationError, Storage
from datafiles.partitions import ByteRange, read_lines
from datafiles.rows import BadRow, Row, output_header, parse_records, parse_rows, render_rows
from modelhost.errors import InvalidInput, StorageUnavailable, UnknownInput
from modelhost.store import model_inputs, timed_call
from wire.partition_calls import BadRowReport, PartitionCall, PartitionDone

_REPORTED_CALLS = 256  # predict calls handed to the node's metrics one by one
_REPORTED_BAD_ROWS = 20  # named in a failed partition's error; all of them go to the errors part


@dataclass(frozen=True)
class PartitionWork:
    """What a partition did: its answer, and each predict call's rows and seconds (the node's
    metrics count them)."""

    done: PartitionDone
    predict_calls: list[tuple[int, float]]


@dataclass(frozen=True)
class ServedModel:
    """The model a partition predicts with, as the batch worker loaded it."""

    node: str
    estimator: Any
    schema: ModelSchema
    predict_calls: list[tuple[int, float]] = field(default_factory=list)

    def predict(
        self, instances: Any, outputs: list[str], columns: list[str] | None = None
    ) -> dict[str, list[Any]]:
        rows = model_inputs(self.schema, instances, outputs, columns)
        results, elapsed = timed_call([getattr(self.estimator, output) for output in outputs], rows)
        self.predict_calls.append((len(rows), elapsed))
        return dict(zip(outputs, results, strict=True))


class Predictor(Protocol):
    """What a partition predicts with: a model the worker loaded (ServedModel), or a graph the
    gateway runs (modelhost.remote_graph.RemoteGraph)."""

    @property
    def node(self) -> str: ...
    @property
    def schema(self) -> ModelSchema: ...
    @property
    def predict_calls(self) -> list[tuple[int, float]]: ...

    def predict(
        self, instances: Any, outputs: list[str], columns: list[str] | None = None
    ) -> dict[str, list[Any]]: ...


def run_partition(
    call: PartitionCall, model: Predictor, storage: Storage, pace: Callable[[], None] = lambda: None
) -> PartitionWork:
    """Read, predict and write the partition; `pace` is called between its steps (the batch
    worker rests there while online traffic is served)."""
    try:
        source = storage.location(call.input)
        target = storage.location(call.output_part)
        errors_target = storage.location(call.errors_part)
    except LocationError as exc:
        raise InvalidInput(str(exc)) from None
    schema = model.schema
    try:
        if call.format == "parquet":
            records = _row_group(storage, source, call.row_group)
            count = len(records)
        else:
            lines = _range_lines(storage, source, call.start, call.end)
            count = len(lines)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise UnknownInput(f"{call.input!r} is not a file") from None
    except OSError as exc:
        raise StorageUnavailable(f"cannot read {call.input!r}: {exc}") from None
    pace()
    outputs = ["predict"] if call.output == "predict" else ["predict", "predict_proba"]
    try:
        out_format = output_format(call.format, call.output_format)
    except FormatRefused as exc:
        raise InvalidInput(str(exc)) from None
    columns = call.header if call.format == "parquet" else None  # records' cells in a CSV output
    body = bytearray()
    if out_format == "csv":
        body += _csv_line(output_header(call.header or [], outputs, schema.classes))
    bad: list[BadRow] = []
    rows_written = 0
    for offset in range(0, count, call.chunk_rows):  # a chunk at a time: parsed, predicted, rendered, dropped
        pace()
        if call.format == out_format:  # CSV to CSV, JSON lines to JSON lines: maybe in bulk
            chunk = lines[offset : offset + call.chunk_rows]
            if (plain := _predict_plain(model, call, chunk, outputs)) is not None:
                body += plain
                rows_written += len(chunk)
                continue
        if call.format == "parquet":
            rows, chunk_bad = parse_records(records[offset : offset + call.chunk_rows], schema, offset + 1)
        else:
            chunk = lines[offset : offset + call.chunk_rows]
            rows, chunk_bad = parse_rows(chunk, call.format, call.header, schema)
        bad += chunk_bad
        _fail_on(bad, call)
        predicted = _predict(model, rows, outputs, schema.feature_names, bad)
        _fail_on(bad, call)
        results = {output: [answer[output] for _, answer in predicted] for output in outputs}
        body += render_rows(
            [row for row, _ in predicted], out_format, results, columns, call.format == "jsonl"
        )
        rows_written += len(predicted)
    pace()
    output = bytes(body)
    del body
    _write(storage, target, output)
    if bad:
        raw = (
            (lambda n: orjson.dumps(records[n - 1], default=str))
            if call.format == "parquet"
            else dict(lines).get
        )
        _write(storage, errors_target, _error_lines(bad, raw))
    done = PartitionDone(
        node=model.node,
        rows=rows_written,
        sha256=sha256_hex(output),
        bad_rows=[BadRowReport(line=line, reason=reason) for line, reason in sorted(bad)],
    )
    calls = model.predict_calls  # row by row, a partition may make thousands: then one sum
    if len(calls) > _REPORTED_CALLS:
        calls = [(sum(rows for rows, _ in calls), sum(seconds for _, seconds in calls))]
    return PartitionWork(done, list(calls))


def _predict_plain(
    model: Predictor, call: PartitionCall, chunk: list[tuple[int, bytes]], outputs: list[str]
) -> bytes | None:
    """The chunk's output lines, read, predicted and written in bulk (datafiles/columnar.py), or
    None where it must go row by row: rows that are not plain, or that the model refuses."""
    features = read_features(chunk, call.format, call.header, model.schema)
    if features is None:
        return None
    try:
        results = model.predict(features, outputs)
    except InvalidInput:
        return None  # which rows: the row path tells
    return render_lines(chunk, call.format, results)


def _predict(
    model: Predictor, chunk: list[Row], outputs: list[str], columns: list[str] | None, bad: list[BadRow]
) -> list[tuple[Row, dict[str, Any]]]:
    """Each row of the chunk with its outputs; rows the model refuses join `bad`."""
    try:
        answers = _predict_rows(model, chunk, outputs, columns)
        return list(zip(chunk, answers, strict=True))
    except InvalidInput:
        pass  # which rows: each alone
    predicted = []
    for row in chunk:  # which rows the model refused
        try:
            predicted.append((row, _predict_rows(model, [row], outputs, columns)[0]))
        except InvalidInput as exc:
            bad.append((row.line, exc.message))
    return predicted


def _predict_rows(
    model: Predictor, rows: list[Row], outputs: list[str], columns: list[str] | None
) -> list[dict[str, Any]]:
    results = model.predict([row.features for row in rows], outputs, columns)
    return [{output: results[output][i] for output in outputs} for i in range(len(rows))]


def _fail_on(bad: list[BadRow], call: PartitionCall) -> None:
    if bad and call.on_bad_rows == "fail":
        named = "; ".join(f"line {line}: {reason}" for line, reason in sorted(bad)[:_REPORTED_BAD_ROWS])
        raise BadRows(f"{len(bad)} bad rows in partition {call.partition} ({named})")


class BadRows(InvalidInput):
    """Rows that cannot be predicted, with on_bad_rows: fail."""


def _write(storage: Storage, location: Location, body: bytes) -> None:
    try:
        storage.write_atomic(location, body)
    except OSError as exc:
        raise StorageUnavailable(f"cannot write {location.url!r}: {exc}") from None


def _range_lines(storage: Storage, source: Location, start: int, end: int) -> list[tuple[int, bytes]]:
    data = storage.read_range(source, start, end)
    return read_lines(io.BytesIO(data), ByteRange(0, len(data)))


def _row_group(storage: Storage, source: Location, index: int) -> list[dict[str, Any]]:
    """One row group of a parquet file, as records: it reads that group's column chunks only."""
    try:
        with storage.filesystem(source).open(source.path, "rb") as file:
            return list(pq.ParquetFile(file).read_row_group(index).to_pylist())
    except (pa.ArrowInvalid, IndexError) as exc:
        raise InvalidInput(f"{source.url!r}, row group {index}: {exc}") from None


def _csv_line(cells: list[str]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(cells)
    return text.getvalue().encode()


def _error_lines(bad: list[BadRow], raw: Callable[[int], bytes | None]) -> bytes:
    """The errors part: each bad row's line, reason and text."""
    return b"".join(
        orjson.dumps({"line": line, "reason": reason, "row": (raw(line) or b"").decode(errors="replace")})
        + b"\n"
        for line, reason in sorted(bad)
    )
