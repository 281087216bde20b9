"""A scikit-learn model compiled to an ONNX graph, used only once it answers as the model does.

skl2onnx converts the model to a graph of one [rows, features] input in the precision scikit-learn
computes the model in: 32-bit floats for a tree or an ensemble of trees taking the inputs as sent
(scikit-learn casts their inputs so), 64-bit floats for anything else; a model with no 64-bit
conversion stays on scikit-learn. The graph is then verified against the model on probe rows: the
deploy's sample, and rows made from the model (artifacts/probe_rows.py). Every `predict` label must
be equal (a regressor's value within TOLERANCE of it, relative to its size), every `predict_proba`
within TOLERANCE. Missing values: a compiled tree ensemble refuses them (skl2onnx's tree graphs do not
carry the branch scikit-learn sends NaN down); any other graph takes them where the model does and
the graph answers them alike on probes with a NaN in each feature. A model that does not convert or
does not verify stays on scikit-learn, and the choice says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from artifacts.formats import ArtifactError, sha256_hex
from artifacts.manifest import RuntimeChoice, RuntimeRequest
from artifacts.onnx_model import OnnxModel, SourceModel
from artifacts.probe_rows import parts, probe_rows, raw_input_trees
from artifacts.schema import ModelSchema, inspect_schema

logger = logging.getLogger(__name__)

TOLERANCE = 1e-5
# Rows given a missing value in each feature in turn (and all features, once).
_MISSING_ROWS = 50


@dataclass(frozen=True)
class Compiled:
    """The runtime chosen for an upload, and the verified graph the nodes run when it is ONNX."""

    choice: RuntimeChoice
    graph: bytes | None = None


class _NotVerified(Exception):
    def __init__(self, reason: str, probes: int = 0, largest_difference: float | None = None) -> None:
        self.reason = reason
        self.probes = probes
        self.largest_difference = largest_difference


def choose_runtime(model: Any, requested: RuntimeRequest, sample: np.ndarray | None = None) -> Compiled:
    """`requested` auto: ONNX Runtime when the conversion verifies, else scikit-learn (with the
    reason); sklearn: no conversion; onnx: ArtifactError unless the conversion verifies."""
    if requested == "sklearn":
        return Compiled(RuntimeChoice(runtime="sklearn", reason="runtime=sklearn was asked for"))
    try:
        return _compile(model, sample)
    except Exception as exc:
        refusal = exc if isinstance(exc, _NotVerified) else _unexpected(exc)
        if requested == "onnx":
            raise ArtifactError(f"runtime=onnx refused: {refusal.reason}") from None
        choice = RuntimeChoice(
            runtime="sklearn",
            reason=refusal.reason,
            probes=refusal.probes,
            largest_difference=refusal.largest_difference,
        )
        return Compiled(choice)


def _unexpected(exc: Exception) -> _NotVerified:
    """A model or converter failing in a way not foreseen: the deploy goes on under scikit-learn
    (a conversion is a speed-up, never a condition), and the log keeps the traceback."""
    logger.warning("the ONNX conversion failed unexpectedly; the model stays on scikit-learn", exc_info=exc)
    return _NotVerified(f"the conversion or its verification failed: {exc!r}")


def _compile(model: Any, sample: np.ndarray | None) -> Compiled:
    schema = inspect_schema(model)
    if "predict" not in schema.outputs:
        raise _NotVerified("no ONNX conversion: the model has no predict (a transformer)")
    text = _text_columns(model)
    if text:
        raise _NotVerified(f"no ONNX conversion: the model reads text columns ({text})")
    single_precision = bool(raw_input_trees(model))
    graph = _convert(model, schema.n_features, single_precision)
    try:
        onnx_model = OnnxModel(graph, source=SourceModel(schema.classes, accepts_missing=True))
    except ArtifactError as exc:
        raise _NotVerified(f"the converted graph is not servable: {exc}") from None
    if onnx_model.n_features_in_ != schema.n_features or (
        "predict_proba" in schema.outputs and "predict_proba" not in inspect_schema(onnx_model).outputs
    ):
        raise _NotVerified("the converted graph does not take the model's inputs or give its outputs")
    rows = _accepted_rows(model, schema, sample)
    largest = _verified(model, onnx_model, rows, schema)
    probes = len(rows)
    missing = None if single_precision else _missing_probes(model, rows, schema)
    accepts_missing = (
        missing is not None and _largest_difference(model, onnx_model, missing, schema) <= TOLERANCE
    )
    if accepts_missing and missing is not None:
        probes += len(missing)
    refused = "" if accepts_missing else "; missing values (NaN) are refused"
    precision = "32-bit" if single_precision else "64-bit"
    choice = RuntimeChoice(
        runtime="onnx",
        reason=f"converted to ONNX ({precision} floats) and verified on {probes} probe rows{refused}",
        probes=probes,
        largest_difference=largest,
        graph_sha256=sha256_hex(graph),
        graph_size=len(graph),
        accepts_missing=accepts_missing,
    )
    return Compiled(choice, graph)


def _convert(model: Any, n_features: int, single_precision: bool) -> bytes:
    from skl2onnx import to_onnx  # slow to import: only where a deploy converts

    options = {id(model): {"zipmap": False}} if hasattr(model, "classes_") else None
    example = np.zeros((1, n_features), dtype=np.float32 if single_precision else np.float64)
    try:
        proto = to_onnx(model, example, options=options)
    except Exception as exc:  # skl2onnx raises many kinds for a model it has no converter for
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        precision = "" if single_precision else "64-bit "
        raise _NotVerified(f"no {precision}ONNX conversion: {message[:300]}") from None
    return bytes(proto.SerializeToString())


def _text_columns(model: Any) -> str:
    for part in parts(model):
        for categories in getattr(part, "categories_", None) or []:
            if np.asarray(categories).dtype.kind in "OUS":
                return f"{type(part).__name__} of text categories"
    return ""


def _accepted_rows(model: Any, schema: ModelSchema, sample: np.ndarray | None) -> np.ndarray:
    """The generated probe rows scikit-learn takes, and the sample's (which it must take)."""
    kept = []
    if sample is not None:
        try:
            model.predict(_frame(sample, schema))
        except (ValueError, TypeError) as exc:
            raise _NotVerified(f"the model refused the sample rows: {exc}") from None
        kept.append(sample)
    generated = probe_rows(model, schema.n_features)
    try:
        model.predict(_frame(generated, schema))
        kept.append(generated)
    except (ValueError, TypeError) as exc:
        if sample is None:
            raise _NotVerified(
                f"the model refused generated probe rows ({exc}): send a sample of real rows with the deploy"
            ) from None
    return np.vstack(kept)


def _verified(model: Any, onnx_model: OnnxModel, rows: np.ndarray, schema: ModelSchema) -> float:
    try:
        largest = _largest_difference(model, onnx_model, rows, schema)
    except (ValueError, TypeError) as exc:  # one runtime refused rows the other took
        raise _NotVerified(f"the verification failed: {exc}", len(rows)) from None
    if largest == float("inf"):
        raise _NotVerified("the ONNX conversion predicts another label on some probe rows", len(rows))
    if largest > TOLERANCE:
        raise _NotVerified(
            f"the ONNX conversion answers differently from scikit-learn on the probe rows "
            f"(largest difference {largest:.3g}, tolerance {TOLERANCE})",
            len(rows),
            largest,
        )
    return largest


def _missing_probes(model: Any, rows: np.ndarray, schema: ModelSchema) -> np.ndarray | None:
    """A missing value in each feature in turn, over several rows, and in all features: None where
    the model refuses them."""
    width, count = schema.n_features, min(_MISSING_ROWS, len(rows))
    blocks = []
    for feature in range(width):
        block = rows[:count].copy()
        block[:, feature] = np.nan
        blocks.append(block)
    blocks.append(np.full((1, width), np.nan))
    missing = np.vstack(blocks)
    try:
        model.predict(_frame(missing, schema))
    except (ValueError, TypeError):
        return None
    return missing


def _largest_difference(model: Any, onnx_model: OnnxModel, rows: np.ndarray, schema: ModelSchema) -> float:
    """The largest difference of the two runtimes' answers; inf where a label differs."""
    frame = _frame(rows, schema)
    expected = np.asarray(model.predict(frame))
    try:
        got = np.asarray(onnx_model.predict(rows))
    except ValueError:
        return float("inf")
    if expected.shape != got.shape:
        return float("inf")
    if hasattr(model, "classes_"):  # labels: the same values of the same types, as JSON answers them
        largest = 0.0 if orjson.dumps(expected.tolist()) == orjson.dumps(got.tolist()) else float("inf")
    else:
        largest = _largest_gap(expected, got, relative=True)
    if "predict_proba" in schema.outputs:
        probabilities = np.asarray(onnx_model.predict_proba(rows))
        expected_p = np.asarray(model.predict_proba(frame))
        if probabilities.shape != expected_p.shape:
            return float("inf")
        largest = max(largest, _largest_gap(expected_p, probabilities, relative=False))
    return largest


def _largest_gap(expected: np.ndarray, got: np.ndarray, relative: bool) -> float:
    """The largest |expected - got| (over max(1, |expected|) when relative). NaN in one answer and
    not in the other is an infinite gap; NaN in both is none."""
    if not expected.size:
        return 0.0
    a, b = expected.astype(np.float64), got.astype(np.float64)
    gap = np.abs(a - b) / (np.maximum(1.0, np.abs(a)) if relative else 1.0)
    both_missing = np.isnan(a) & np.isnan(b)
    gap = np.where(both_missing, 0.0, np.where(np.isnan(gap), np.inf, gap))
    return float(np.max(gap))


def _frame(rows: np.ndarray, schema: ModelSchema) -> np.ndarray | pd.DataFrame:
    """The rows as scikit-learn is sent them: under its feature names where it was fitted with them."""
    return pd.DataFrame(rows, columns=schema.feature_names) if schema.feature_names is not None else rows
