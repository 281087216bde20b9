"""What a deploy learns from its upload before anything is stored: the model's schema, and the
runtime its nodes will run it under (with the graph compiled from it, verified on probe rows that
include the deploy's optional sample)."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np

from artifacts.formats import ArtifactError, ArtifactFormat, load_artifact
from artifacts.manifest import RuntimeChoice, RuntimeRequest
from artifacts.schema import ONNX_OUTPUTS, ModelSchema, inspect_schema
from datafiles.rows import parse_rows
from inferrer.errors import InvalidInput

# A sample is probe rows, not a dataset: enough to cover what the model is sent.
MAX_SAMPLE_ROWS = 10_000
MAX_SAMPLE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Inspected:
    signature: ModelSchema
    runtime: RuntimeChoice
    graph: bytes | None = None  # the verified ONNX graph, when the runtime chosen is one compiled


def inspect_upload(
    data: bytes,
    fmt: ArtifactFormat,
    trusted_types: list[str],
    runtime: RuntimeRequest,
    sample: bytes | None,
) -> Inspected:
    """Load the upload as a model (InvalidInput when it is not one) and choose its runtime.

    Runs in a worker thread: loading, converting and probing a forest takes about a second."""
    try:
        model = load_artifact(data, fmt, trusted_types)
        signature = inspect_schema(model)
    except ArtifactError as exc:
        raise InvalidInput(str(exc)) from None
    if sample is not None and (fmt is ArtifactFormat.ONNX or runtime == "sklearn"):
        raise InvalidInput(
            "a sample verifies a scikit-learn model's conversion to ONNX: an .onnx upload or "
            "runtime=sklearn takes none"
        )
    if fmt is ArtifactFormat.ONNX:
        if runtime == "sklearn":
            raise InvalidInput("an .onnx upload runs on ONNX Runtime: runtime=sklearn does not apply to it")
        return Inspected(signature, RuntimeChoice(runtime="onnx", reason="uploaded as an ONNX graph"))
    rows = _sample_rows(sample, signature) if sample is not None else None
    from artifacts.onnx_conversion import choose_runtime  # skl2onnx and onnxruntime: only where deploys run

    try:
        compiled = choose_runtime(model, runtime, rows)
    except ArtifactError as exc:  # runtime=onnx, and the conversion did not verify
        raise InvalidInput(str(exc)) from None
    if compiled.choice.runtime == "onnx":  # the graph answers predict and predict_proba only
        served = [o for o in signature.outputs if o in ONNX_OUTPUTS]
        signature = signature.model_copy(update={"outputs": served})
    return Inspected(signature, compiled.choice, compiled.graph)


def _sample_rows(sample: bytes, signature: ModelSchema) -> np.ndarray:
    """A CSV file read as a job's CSV input is (datafiles.rows): a header row, then rows; where the
    model was fitted with feature names they pick its columns, otherwise every column is one."""
    if len(sample) > MAX_SAMPLE_BYTES or sample.count(b"\n") > MAX_SAMPLE_ROWS + 1:
        raise InvalidInput(f"a sample holds at most {MAX_SAMPLE_ROWS} rows and {MAX_SAMPLE_BYTES} bytes")
    lines = sample.splitlines()
    if len(lines) < 2:
        raise InvalidInput("the sample must be a CSV file: a header row, then at least one row")
    header = _header(lines[0])
    numbered = [(line, raw) for line, raw in enumerate(lines[1:], start=2) if raw.strip()]
    rows, bad = parse_rows(numbered, "csv", header, signature)
    if bad:
        line, reason = bad[0]
        raise InvalidInput(f"sample line {line}: {reason}")
    try:
        values = np.array([row.features for row in rows], dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(
            "the sample's features must be numbers (a model that reads text is not converted)"
        ) from None
    if not values.size:
        raise InvalidInput("the sample has no rows")
    return values


def _header(line: bytes) -> list[str]:
    try:
        (fields,) = list(csv.reader([line.decode()]))
    except (UnicodeDecodeError, csv.Error, ValueError):
        raise InvalidInput("the sample's header is not one CSV record of UTF-8 text") from None
    return fields
