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

from artifacts.formats import ArtifactError
from artifacts.schema import TensorSpec

# ai.onnx (written "" in a graph) and ai.onnx.ml: the operators every ONNX Runtime build carries.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
# An input's element type, as ONNX Runtime names it: what its values are given as, and its
# datatype in the Open Inference Protocol.
_ELEMENT_TYPES: dict[str, tuple[Any, str]] = {
    "tensor(float)": (np.float32, "FP32"),
    "tensor(double)": (np.float64, "FP64"),
    "tensor(int64)": (np.int64, "INT64"),
    "tensor(int32)": (np.int32, "INT32"),
    "tensor(bool)": (np.bool_, "BOOL"),
    "tensor(string)": (np.object_, "BYTES"),
}
# A classifier's class labels, on its classifier or ZipMap node.
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


@dataclass(frozen=True)
class GraphInput:
    name: str
    element_type: str  # e.g. "tensor(float)"
    width: int  # values per row


class OnnxModel:
    """An ONNX Runtime session behind the estimator calls the nodes make."""

    def __init__(self, data: bytes, allowed_domains: Sequence[str] = ()) -> None:
        proto = _checked_graph(data, allowed_domains)
        options = ort.SessionOptions()
        # A node predicts on one thread (modelhost/store.py): a session of its own threads would
        # only compete with the event loop for the same cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a graph it refuses
            raise ArtifactError(f"ONNX Runtime cannot run this graph: {exc}") from None
        self.inputs = _graph_inputs(self._session)
        self.input_specs = [
            TensorSpec(name=i.name, datatype=_ELEMENT_TYPES[i.element_type][1], shape=[-1, i.width])
            for i in self.inputs
        ]
        self.n_features_in_ = sum(i.width for i in self.inputs)
        if len(self.inputs) > 1:
            self.feature_names_in_ = np.array([i.name for i in self.inputs], dtype=object)
        outputs = self._session.get_outputs()
        self._label = outputs[0].name
        self._probabilities = outputs[1].name if len(outputs) > 1 else None
        classes = _class_labels(proto)
        if classes is not None and self._probabilities is not None:
            # Without classes to order its probabilities by, predict_proba is not offered
            # (artifacts/schema.py lists it only beside classes).
            self.classes_ = np.asarray(classes)

    def predict(self, rows: np.ndarray | pd.DataFrame) -> np.ndarray:
        (labels,) = self._run(rows, [self._label])
        values = np.asarray(labels)
        return values.reshape(len(values), -1)[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values

    def predict_proba(self, rows: np.ndarray | pd.DataFrame) -> np.ndarray:
        assert self._probabilities is not None
        (probabilities,) = self._run(rows, [self._probabilities])
        if isinstance(probabilities, list):  # ZipMap: one {class: probability} per row
            return np.array([[row[c] for c in self.classes_.tolist()] for row in probabilities])
        return np.asarray(probabilities)

    def _run(self, rows: np.ndarray | pd.DataFrame, outputs: list[str]) -> list[Any]:
        try:
            return list(self._session.run(outputs, self._feed(rows)))
        except Exception as exc:  # onnxruntime's own types: a value the graph cannot take
            raise ValueError(f"the ONNX graph refused the input: {exc}") from None

    def _feed(self, rows: np.ndarray | pd.DataFrame) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1:
            (single,) = self.inputs
            return {single.name: _as(np.asarray(rows), single.element_type)}
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
    target = _ELEMENT_TYPES[element_type][0]
    if target is np.object_:
        return np.array([str(v) for v in values.reshape(-1)], dtype=object).reshape(values.shape)
    return values.astype(target)


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
    return proto


def _graph_inputs(session: ort.InferenceSession) -> list[GraphInput]:
    inputs = []
    for spec in session.get_inputs():
        if spec.type not in _ELEMENT_TYPES:
            raise ArtifactError(
                f"ONNX input {spec.name!r} is a {spec.type}: expected a tensor of numbers or text"
            )
        shape = spec.shape
        if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
            raise ArtifactError(
                f"ONNX input {spec.name!r} has shape {shape}: expected [rows, features] with a fixed "
                "number of features"
            )
        inputs.append(GraphInput(spec.name, spec.type, shape[1]))
    if not inputs:
        raise ArtifactError("ONNX graph declares no input")
    if len(inputs) > 1 and any(i.width != 1 for i in inputs):
        raise ArtifactError("an ONNX graph of several inputs must take one column in each (one per feature)")
    return inputs


def _class_labels(proto: onnx.ModelProto) -> list[Any] | None:
    """The class labels of the last node that names them (ZipMap after a classifier)."""
    labels = None
    for node in proto.graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                labels = [v.decode() if isinstance(v, bytes) else v for v in values]
    return labels
