"""A scikit-learn model compiled to an ONNX graph, used only once it answers as the model does.

skl2onnx converts the model to a graph of one input, a [rows, features] tensor of 32-bit floats
(the precision scikit-learn's trees compare in). The graph is then verified against the model on
probe rows: the rows of the deploy's sample, plus rows made from the model itself: for trees, a
value just either side of every split threshold (as 32-bit floats); otherwise draws around the
fitted scale of the model's first step (a scaler's mean and spread), or standard normal draws; and
a missing value in each feature, where the model takes them. Every `predict` label must be equal
(a regressor's value within TOLERANCE of it, relative to its size), every `predict_proba` within
TOLERANCE. A model that does not convert or does not verify stays on scikit-learn, and the choice
says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pandas as pd

from artifacts.formats import ArtifactError, sha256_hex
from artifacts.manifest import Compiled, RuntimeChoice, RuntimeRequest
from artifacts.onnx_model import OnnxModel, SourceModel
from artifacts.schema import inspect_schema

TOLERANCE = 1e-5
RANDOM_PROBES = 1_000
# Rows beyond which split thresholds are sampled (a forest of 100 deep trees has ~10,000 splits).
MAX_THRESHOLD_PROBES = 60_000
_SEED = 20260


def choose_runtime(model: Any, requested: RuntimeRequest, sample: np.ndarray | None = None) -> Compiled:
    """`requested` auto: ONNX Runtime when the conversion verifies, else scikit-learn (with the
    reason); sklearn: no conversion; onnx: ArtifactError unless the conversion verifies."""
    if requested == "sklearn":
        return Compiled(RuntimeChoice(runtime="sklearn", reason="runtime=sklearn was asked for"))
    try:
        return _compile(model, sample)
    except Exception as exc:  # a model may fail its probes in any way: it then stays on scikit-learn
        refusal = exc if isinstance(exc, _NotVerified) else _NotVerified(f"the verification failed: {exc!r}")
        if requested == "onnx":
            raise ArtifactError(f"runtime=onnx refused: {refusal.reason}") from None
        return Compiled(
            RuntimeChoice(
                runtime="sklearn",
                reason=refusal.reason,
                probes=refusal.probes,
                largest_difference=refusal.largest_difference,
            )
        )


class _NotVerified(Exception):
    def __init__(self, reason: str, probes: int = 0, largest_difference: float | None = None) -> None:
        self.reason = reason
        self.probes = probes
        self.largest_difference = largest_difference


def _compile(model: Any, sample: np.ndarray | None) -> Compiled:
    schema = inspect_schema(model)
    text = _text_columns(model)
    if text:
        raise _NotVerified(f"no ONNX conversion: the model reads text columns ({text})")
    graph = _convert(model, schema.n_features)
    try:
        onnx_model = OnnxModel(graph, source=SourceModel(schema.classes, accepts_missing=True))
    except ArtifactError as exc:
        raise _NotVerified(f"the converted graph is not servable: {exc}") from None
    if onnx_model.n_features_in_ != schema.n_features or (
        "predict_proba" in schema.outputs and "predict_proba" not in inspect_schema(onnx_model).outputs
    ):
        raise _NotVerified("the converted graph does not take the model's inputs or give its outputs")
    rows = _accepted_rows(model, schema.feature_names, sample)
    outputs = schema.outputs
    largest = _largest_difference(model, onnx_model, rows, schema.feature_names, outputs)
    probes = len(rows)
    # Missing values pass where the graph answers them as the model does; else they are refused.
    missing = _missing_probes(model, rows, schema.feature_names)
    accepts_missing = (
        missing is not None
        and _largest_difference(model, onnx_model, missing, schema.feature_names, outputs) <= TOLERANCE
    )
    if accepts_missing and missing is not None:
        probes += len(missing)
    if largest == float("inf"):
        raise _NotVerified("the ONNX conversion predicts another label on some probe rows", probes)
    if largest > TOLERANCE:
        raise _NotVerified(
            f"the ONNX conversion answers differently from scikit-learn on the probe rows "
            f"(largest difference {largest:.3g}, tolerance {TOLERANCE})",
            probes,
            largest,
        )
    refused = "" if accepts_missing else "; missing values (NaN) are refused"
    choice = RuntimeChoice(
        runtime="onnx",
        reason=f"converted to ONNX and verified on {probes} probe rows{refused}",
        probes=probes,
        largest_difference=largest,
        graph_sha256=sha256_hex(graph),
        graph_size=len(graph),
        accepts_missing=accepts_missing,
    )
    return Compiled(choice, graph)


def _convert(model: Any, n_features: int) -> bytes:
    from skl2onnx import to_onnx  # slow to import: only where a deploy converts

    options = {id(model): {"zipmap": False}} if hasattr(model, "classes_") else None
    try:
        proto = to_onnx(model, np.zeros((1, n_features), dtype=np.float32), options=options)
    except Exception as exc:  # skl2onnx raises many kinds for a model it has no converter for
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _NotVerified(f"no ONNX conversion: {message[:300]}") from None
    return bytes(proto.SerializeToString())


def _parts(model: Any) -> Iterator[Any]:
    """The model and every estimator inside it (pipeline steps, column transformers, ensembles)."""
    yield model
    inner: list[Any] = []
    if hasattr(model, "steps"):
        inner = [step for _, step in model.steps]
    elif hasattr(model, "transformers_"):
        inner = [t for _, t, _ in model.transformers_]
    elif hasattr(model, "transformer_list"):
        inner = [t for _, t in model.transformer_list]
    elif hasattr(model, "estimators_"):
        inner = list(np.ravel(np.asarray(model.estimators_, dtype=object)))
    for part in inner:
        if not isinstance(part, str):  # "passthrough", "drop"
            yield from _parts(part)


def _text_columns(model: Any) -> str:
    for part in _parts(model):
        for categories in getattr(part, "categories_", None) or []:
            if np.asarray(categories).dtype.kind in "OUS":
                return f"{type(part).__name__} of text categories"
    return ""


def _raw_input_trees(model: Any) -> list[Any]:
    """The trees that split the inputs as sent: a tree or an ensemble of trees, not behind a step."""
    if hasattr(model, "steps"):
        if any(not isinstance(step, str) for _, step in model.steps[:-1]):
            return []
        model = model.steps[-1][1]
    return [part for part in _parts(model) if hasattr(part, "tree_")]


def _probe_rows(model: Any, n_features: int) -> np.ndarray:
    rng = np.random.default_rng(_SEED)
    first = model.steps[0][1] if hasattr(model, "steps") else model
    if hasattr(first, "mean_") and hasattr(first, "scale_") and first.mean_ is not None:
        spread = np.where(first.scale_ > 0, first.scale_, 1.0)
        base = rng.normal(first.mean_, spread, (RANDOM_PROBES, n_features))
    elif hasattr(first, "data_min_"):
        base = rng.uniform(first.data_min_, first.data_max_, (RANDOM_PROBES, n_features))
    else:
        base = rng.normal(0.0, 1.0, (RANDOM_PROBES, n_features))
    splits = sorted({(int(f), float(t)) for tree in _raw_input_trees(model) for f, t in _splits(tree.tree_)})
    if not splits:
        return base
    if 2 * len(splits) > MAX_THRESHOLD_PROBES:
        chosen = rng.choice(len(splits), MAX_THRESHOLD_PROBES // 2, replace=False)
        splits = [splits[i] for i in sorted(chosen)]
    rows = base[rng.integers(0, len(base), 2 * len(splits))]
    for i, (feature, threshold) in enumerate(splits):
        rows[2 * i, feature], rows[2 * i + 1, feature] = _either_side(threshold)
    return np.vstack([base, rows])


def _splits(tree: Any) -> Iterator[tuple[int, float]]:
    for feature, threshold in zip(tree.feature, tree.threshold, strict=True):
        if feature >= 0:  # leaves have feature -2
            yield feature, threshold


def _either_side(threshold: float) -> tuple[float, float]:
    """The 32-bit floats just at or below a threshold and just above it (trees compare float32)."""
    near = np.float32(threshold)
    if float(near) > threshold:
        return float(np.nextafter(near, np.float32(-np.inf))), float(near)
    return float(near), float(np.nextafter(near, np.float32(np.inf)))


def _accepted_rows(model: Any, names: list[str] | None, sample: np.ndarray | None) -> np.ndarray:
    """The generated probe rows scikit-learn takes, and the sample's (which it must take)."""
    n_features = inspect_schema(model).n_features
    kept = []
    if sample is not None:
        try:
            model.predict(_frame(sample, names))
        except (ValueError, TypeError) as exc:
            raise _NotVerified(f"the model refused the sample rows: {exc}") from None
        kept.append(sample)
    generated = _probe_rows(model, n_features)
    try:
        model.predict(_frame(generated, names))
        kept.append(generated)
    except (ValueError, TypeError) as exc:
        if sample is None:
            raise _NotVerified(
                f"the model refused generated probe rows ({exc}): send a sample of real rows with the deploy"
            ) from None
    return np.vstack(kept)


def _missing_probes(model: Any, rows: np.ndarray, names: list[str] | None) -> np.ndarray | None:
    """A missing value in each feature in turn, and in all: None where the model refuses them."""
    width = rows.shape[1]
    missing = np.vstack([rows[:width].copy(), rows[:1].copy()])
    missing[np.arange(width), np.arange(width)] = np.nan
    missing[-1, :] = np.nan
    try:
        model.predict(_frame(missing, names))
    except (ValueError, TypeError):
        return None
    return missing


def _largest_difference(
    model: Any, onnx_model: OnnxModel, rows: np.ndarray, names: list[str] | None, outputs: list[str]
) -> float:
    """The largest difference of the two runtimes' answers; inf where a label differs."""
    frame = _frame(rows, names)
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
    if "predict_proba" in outputs:
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


def _frame(rows: np.ndarray, names: list[str] | None) -> np.ndarray | pd.DataFrame:
    """The rows as scikit-learn is sent them: under its feature names where it was fitted with them."""
    return pd.DataFrame(rows, columns=names) if names is not None else rows
