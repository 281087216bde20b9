"""ONNX graphs as models: checked when read, run by an ONNX Runtime session.

A graph is taken when it loads, declares what it takes (one 2-D input of a fixed number of
features, or several inputs of one column each, named after the features) and what it gives, keeps
no tensor outside its own bytes, and uses only the standard operator domains or those the upload
lists. It is served through the same calls as a scikit-learn estimator: `predict`, and
`predict_proba` where the graph gives probabilities and names its classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd

from artifacts.datatypes import TensorDatatype, numpy_type
from artifacts.formats import ArtifactError
from artifacts.schema import TensorSpec

# ai.onnx (written "" in a graph) and ai.onnx.ml: the operators every ONNX Runtime build carries.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
# An input's element type, as ONNX Runtime names it, and its datatype in the Open Inference Protocol
# (which says how its values are held: numpy_type).
_ELEMENT_TYPES: dict[str, TensorDatatype] = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(int64)": "INT64",
    "tensor(int32)": "INT32",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}
# Loops and branches, and operators that size a tensor from the values they are given: none is
# in what skl2onnx makes of scikit-learn's models, and each lets a request decide a node's work.
INPUT_SIZED_OPERATORS = frozenset({"Loop", "Scan", "If", "ConstantOfShape", "Range", "Tile", "Expand"})
# A classifier's class labels, on its classifier or ZipMap node.
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


@dataclass(frozen=True)
class SourceModel:
    """What a graph compiled from a scikit-learn model keeps of it: the classes its probabilities
    are in (a converted graph may not name them), and whether NaN is fed to it: where the graph
    does not answer missing values as the model does, they are refused (a 422, not another answer).
    A compiled graph refuses infinity as scikit-learn does."""

    classes: list[Any] | None
    accepts_missing: bool


@dataclass(frozen=True)
class GraphInput:
    name: str
    element_type: str  # e.g. "tensor(float)"
    width: int  # values per row


class OnnxModel:
    """An ONNX Runtime session behind the estimator calls the nodes make."""

    def __init__(
        self, data: bytes, allowed_domains: Sequence[str] = (), source: SourceModel | None = None
    ) -> None:
        """`source`: the scikit-learn model the graph was compiled from; None for an ONNX upload."""
        self._source = source
        proto = _checked_graph(data, allowed_domains)
        options = ort.SessionOptions()
        # A node predicts on one thread (modelhost/store.py): a session of its own threads would
        # only compete with the event loop for the same cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            # No constant folding: a graph of a few bytes may declare a constant of gigabytes,
            # which folding would build while the session is made (at upload, on every node).
            self._session = ort.InferenceSession(
                data, options, providers=["CPUExecutionProvider"], disabled_optimizers=["ConstantFolding"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for a graph it refuses
            raise ArtifactError(f"ONNX Runtime cannot run this graph: {exc}") from None
        self.inputs = _graph_inputs(self._session)
        self.input_specs = [
            TensorSpec(name=i.name, datatype=_ELEMENT_TYPES[i.element_type], shape=[-1, i.width])
            for i in self.inputs
        ]
        self.n_features_in_ = sum(i.width for i in self.inputs)
        if len(self.inputs) > 1 or self.inputs[0].width == 1:  # one column each: named by the graph
            self.feature_names_in_ = np.array([i.name for i in self.inputs], dtype=object)
        outputs = self._session.get_outputs()
        _check_per_row(outputs[0])
        self._label = outputs[0].name
        self._probabilities = None
        classes = None
        if len(outputs) > 1:
            classes = source.classes if source is not None else _class_labels(proto, outputs[1].name)
        # Without classes to order them by, probabilities are not offered (artifacts/schema.py
        # lists predict_proba only beside classes).
        if classes is not None and _are_probabilities(outputs[1], len(classes)):
            self._probabilities = outputs[1].name
            self.classes_ = np.asarray(classes)

    def predict(self, rows: np.ndarray | pd.DataFrame) -> np.ndarray:
        (labels,) = self._run(rows, [self._label])
        values = _shortest(np.asarray(labels))
        return values.reshape(len(values), -1)[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_proba(self, rows: np.ndarray | pd.DataFrame) -> np.ndarray:
        assert self._probabilities is not None
        (probabilities,) = self._run(rows, [self._probabilities])
        if isinstance(probabilities, list):  # ZipMap: one {class: probability} per row
            try:
                return _shortest(
                    np.array([[row[c] for c in self.classes_.tolist()] for row in probabilities])
                )
            except (KeyError, TypeError) as exc:
                raise ValueError(f"the ONNX graph's probabilities do not name its classes: {exc}") from None
        return _shortest(np.asarray(probabilities))

    def _run(self, rows: np.ndarray | pd.DataFrame, outputs: list[str]) -> list[Any]:
        try:
            return list(self._session.run(outputs, self._feed(rows)))
        except Exception as exc:  # onnxruntime's own types: a value the graph cannot take
            raise ValueError(f"the ONNX graph refused the input: {exc}") from None

    def _feed(self, rows: np.ndarray | pd.DataFrame) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1:
            (single,) = self.inputs
            values = _as(np.asarray(rows), single.element_type)
            if self._source is not None:
                _check_finite(values, self._source.accepts_missing)
            return {single.name: values}
        columns = (
            [rows[name].to_numpy() for name in self.feature_names_in_]
            if isinstance(rows, pd.DataFrame)
            else list(np.asarray(rows).T)
        )
        return {
            spec.name: _as(column, spec.element_type).reshape(-1, 1)
            for spec, column in zip(self.inputs, columns, strict=True)
        }


def _as(values: np.ndarray, element_type: str) -> np.ndarray:
    """The values as the input's element type; ValueError (a 422) for one that type cannot hold
    exactly: an integer input takes whole numbers in its range, a bool input 0 and 1."""
    target: Any = numpy_type(_ELEMENT_TYPES[element_type])
    if target is np.object_:
        return np.array([str(v) for v in values.reshape(-1)], dtype=object).reshape(values.shape)
    if target in (np.float32, np.float64):
        return values.astype(target)
    numbers = values.astype(np.float64)
    limits = (0, 1) if target is np.bool_ else (np.iinfo(target).min, np.iinfo(target).max)
    exact = np.isfinite(numbers) & (numbers == np.round(numbers))
    if not exact.all() or numbers.min() < limits[0] or numbers.max() > limits[1]:
        raise ValueError(f"{element_type} input takes whole numbers from {limits[0]} to {limits[1]}")
    return numbers.astype(target)


def _shortest(values: np.ndarray) -> np.ndarray:
    """32-bit floats as the 7 significant digits they hold (0.9, not 0.8999999761581421, once
    widened for JSON): what the graph computed, written as a person would read it."""
    if values.dtype != np.float32:
        return values
    wide = values.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(wide)))
    scale = np.where(
        np.isfinite(magnitude), 10.0 ** (6 - np.where(np.isfinite(magnitude), magnitude, 0)), 1.0
    )
    return np.round(wide * scale) / scale


def _check_finite(values: np.ndarray, nan_taken: bool) -> None:
    """Refuse what scikit-learn refuses: infinity (or a value beyond 32-bit floats), and NaN where
    the model takes no missing values."""
    if np.isinf(values).any():
        raise ValueError("input contains infinity or a value too large for 32-bit floats")
    if not nan_taken and np.isnan(values).any():
        raise ValueError(
            "input contains NaN: compiled to ONNX, this model takes no missing values "
            "(deploy it with runtime=sklearn to send them)"
        )


def _checked_graph(data: bytes, allowed_domains: Sequence[str]) -> onnx.ModelProto:
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError
        raise ArtifactError(f"not a valid ONNX graph: {exc}") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise ArtifactError("ONNX graph keeps tensors in external files: upload one self-contained file")
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx's ValidationError
        raise ArtifactError(f"not a valid ONNX graph: {exc}") from None
    domains = (
        {o.domain for o in proto.opset_import}
        | {node.domain for node in proto.graph.node}
        | {f.domain for f in proto.functions}
    )
    refused = sorted(domains - STANDARD_DOMAINS - set(allowed_domains))
    if refused:
        raise ArtifactError(
            f"ONNX graph uses operator domains {', '.join(refused)}: custom operators are refused "
            "unless listed in trusted_types"
        )
    if not proto.graph.output:
        raise ArtifactError("ONNX graph declares no output")
    unbounded = sorted(_operators(proto.graph) & INPUT_SIZED_OPERATORS)
    if unbounded:
        raise ArtifactError(
            f"ONNX graph uses {', '.join(unbounded)}: operators whose work or memory the input's "
            "values decide are refused (a request could stall or exhaust a node)"
        )
    return proto


def _operators(graph: onnx.GraphProto) -> set[str]:
    """Every operator type in the graph and in the subgraphs of its nodes' attributes."""
    found = set()
    for node in graph.node:
        found.add(node.op_type)
        for attribute in node.attribute:
            for sub in [attribute.g, *attribute.graphs]:
                found |= _operators(sub)
    return found


def _graph_inputs(session: ort.InferenceSession) -> list[GraphInput]:
    inputs = []
    for spec in session.get_inputs():
        if spec.type not in _ELEMENT_TYPES:
            raise ArtifactError(
                f"ONNX input {spec.name!r} is a {spec.type}: expected a tensor of numbers or text"
            )
        shape = spec.shape
        if len(shape) != 2 or isinstance(shape[0], int) or not isinstance(shape[1], int) or shape[1] < 1:
            raise ArtifactError(
                f"ONNX input {spec.name!r} has shape {shape}: expected [rows, features], any number "
                "of rows and a fixed number of features"
            )
        inputs.append(GraphInput(spec.name, spec.type, shape[1]))
    if not inputs:
        raise ArtifactError("ONNX graph declares no input")
    if any(i.element_type == "tensor(string)" and i.width != 1 for i in inputs):
        raise ArtifactError("an ONNX text input must take one column (one input per text feature)")
    if len(inputs) > 1 and any(i.width != 1 for i in inputs):
        raise ArtifactError("an ONNX graph of several inputs must take one column in each (one per feature)")
    return inputs


def _class_labels(proto: onnx.ModelProto, probabilities: str) -> list[Any] | None:
    """The class labels on the node that produces the probabilities (a classifier, or ZipMap)."""
    for node in proto.graph.node:
        if probabilities in node.output:
            for attribute in node.attribute:
                if attribute.name in _CLASS_ATTRIBUTES:
                    values = onnx.helper.get_attribute_value(attribute)
                    return [v.decode() if isinstance(v, bytes) else v for v in values]
    return None


def _check_per_row(output: Any) -> None:
    """A tensor of one value (or one row of values) per input row: [rows] or [rows, k]."""
    shape = output.shape if output.type.startswith("tensor(") else None
    if shape is None or len(shape) not in (1, 2) or isinstance(shape[0], int):
        raise ArtifactError(
            f"ONNX graph's first output (predict) {output.name!r} is a {output.type} "
            f"of shape {output.shape}: "
            "expected a tensor of one value or row per input row"
        )


def _are_probabilities(output: Any, classes: int) -> bool:
    """A [rows, classes] tensor, or ZipMap's sequence of {class: probability} maps."""
    if output.type.startswith("seq(map("):
        return True
    if not output.type.startswith("tensor(") or len(output.shape) != 2:
        return False
    rows, width = output.shape
    return not isinstance(rows, int) and (width == classes or not isinstance(width, int))
