"""Open Inference Protocol V2 tensors: decode infer requests (JSON or binary data), encode answers."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from artifacts.datatypes import NUMBER_DATATYPES, TEXT, TensorDatatype
from artifacts.manifest import Manifest
from artifacts.schema import OUTPUTS
from inferrer.dataplane.columns import as_table, check_columns
from inferrer.dataplane.rows import check_row_count
from inferrer.errors import InvalidInput
from wire.errors import parse_json_object
from wire.v2_answers import PLATFORMS, V2ModelMetadata, V2ModelParameters, V2TensorMetadata

INPUT_NAME = "input-0"


# What the body can say before the model is known. The model decides the rest at run time (400): the
# tensors it takes (one [rows, n_features] tensor, or one per fitted feature, by name) and the
# outputs it offers. So does the arithmetic no schema states: `data` (or the binary data) holds as
# many values as `shape` multiplies to, each of the datatype.
INFER_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": [*NUMBER_DATATYPES, TEXT]},
                    "data": {"type": "array", "description": "The values, flat or nested row-major"},
                    "parameters": {
                        "type": "object",
                        "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
                    },
                },
                # The values are in `data`, or in the binary data after the JSON (binary_data_size).
                "anyOf": [
                    {"required": ["data"]},
                    {
                        "required": ["parameters"],
                        "properties": {"parameters": {"required": ["binary_data_size"]}},
                    },
                ],
            },
        },
        "outputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string", "enum": OUTPUTS}},
            },
        },
    },
}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    rows: (
        np.ndarray
    )  # a float matrix, or a table for one tensor per named feature (inferrer/dataplane/columns.py)
    outputs: list[str]
    outputs_named: bool = False  # the request named its outputs (else: every output offered)


def decode_infer_request(
    raw: bytes, header_length: int | None, manifest: Manifest, max_rows: int
) -> InferRequest:
    """One [rows, features] tensor of numbers, or one [rows] (or [rows, 1]) tensor per feature: named
    as the fitted features (in any order; BYTES for text) when the model has names."""
    header, binary = (raw[:header_length], raw[header_length:]) if header_length else (raw, b"")
    body = parse_json_object(header)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput('"inputs" must be a non-empty list of tensors')
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in inputs:
        name, array, offset = _decode_tensor(tensor, binary, offset)
        if name in tensors:
            raise InvalidInput(f"input {name!r} is given twice")
        tensors[name] = array
    rows = _as_rows(tensors, manifest)
    check_row_count(rows.shape[0], manifest.signature.n_features, max_rows)
    requested = body.get("outputs")
    if requested is None:
        outputs = list(manifest.signature.outputs)
    elif isinstance(requested, list) and all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested
    ):
        outputs = [o["name"] for o in requested]
    else:
        raise InvalidInput('"outputs" must be a list of {"name": ...}')
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput('"id" must be a string')
    return InferRequest(request_id, rows, outputs, requested is not None)


def _is_count(value: object) -> bool:
    """A non-negative JSON integer (a bool is an int in Python, not in JSON)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _decode_tensor(tensor: Any, binary: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(tensor, dict):
        raise InvalidInput("each input must be an object with name, shape, datatype and data")
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    if not isinstance(name, str) or not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise InvalidInput("each input needs a name and a shape of non-negative integers")
    if not isinstance(datatype, str) or (datatype != TEXT and datatype not in NUMBER_DATATYPES):
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not one of {', '.join(NUMBER_DATATYPES)}, {TEXT}"
        )
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"input {name!r}: parameters must be an object")
    size, data = parameters.get("binary_data_size"), tensor.get("data")
    if size is not None and not _is_count(size):
        raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
    if size is None and not isinstance(data, list):
        raise InvalidInput(f"input {name!r}: give its values in data (a list) or binary_data_size")
    try:
        if size is not None:
            chunk = binary[offset : offset + size]
            if len(chunk) != size:
                raise InvalidInput(f"input {name!r}: binary data is shorter than binary_data_size")
            array = _from_binary(name, chunk, datatype)
            offset += size
        elif datatype == TEXT:
            array = _text_from_json(name, data)
        else:
            array = np.asarray(data, dtype=NUMBER_DATATYPES[datatype]).reshape(-1)
    except (TypeError, ValueError, OverflowError):  # Overflow: e.g. 300 as INT8, inf as INT64
        kind = "strings" if datatype == TEXT else "numbers"
        raise InvalidInput(f"input {name!r}: data must be {datatype} {kind}") from None
    if array.size != math.prod(shape):
        raise InvalidInput(f"input {name!r}: shape {shape} needs {math.prod(shape)} values, got {array.size}")
    return name, array.reshape(shape), offset


def _from_binary(name: str, chunk: bytes, datatype: str) -> np.ndarray:
    if datatype != TEXT:
        return np.frombuffer(chunk, dtype=np.dtype(NUMBER_DATATYPES[datatype]).newbyteorder("<"))
    values, at = [], 0
    while at < len(chunk):  # each element: its length (uint32, little-endian), then its bytes
        if at + 4 > len(chunk):
            raise InvalidInput(f"input {name!r}: BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", chunk, at)
        element = chunk[at + 4 : at + 4 + length]
        if len(element) != length:
            raise InvalidInput(f"input {name!r}: BYTES data ends inside an element")
        values.append(_utf8(name, element))
        at += 4 + length
    return _text_array(values)


def _text_from_json(name: str, data: Any) -> np.ndarray:
    """Strings (null for a missing value), flat or nested row-major."""
    if isinstance(data, list):
        values = np.asarray(data, dtype=object).reshape(-1).tolist()
        if all(isinstance(v, str | None) for v in values):
            return _text_array(values)
    raise InvalidInput(f"input {name!r}: BYTES data must be a list of strings (or null for missing)")


def _utf8(name: str, element: bytes) -> str:
    try:
        return element.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"input {name!r}: BYTES elements must be UTF-8 text") from None


def _text_array(values: Sequence[str | None]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _as_rows(tensors: dict[str, np.ndarray], manifest: Manifest) -> np.ndarray:
    signature = manifest.signature
    names, n_features = signature.feature_names, signature.n_features
    if any(array.size == 0 for array in tensors.values()):
        raise InvalidInput("every input needs at least one value: a prediction needs a row")
    if names is not None and (len(tensors) > 1 or set(tensors) <= set(names)):
        return _as_table(tensors, names)
    if any(array.dtype == object for array in tensors.values()):
        raise InvalidInput(f"{TEXT} inputs are for models fitted with feature names, one input per feature")
    if len(tensors) == 1:
        ((name, array),) = tensors.items()
        if array.ndim != 2 or array.shape[1] != n_features:
            raise InvalidInput(f"input {name!r}: expected shape [-1, {n_features}], got {list(array.shape)}")
        return array.astype(np.float64)
    columns = [array.reshape(array.shape[0], -1) for array in tensors.values()]
    if len(columns) != n_features or any(c.shape[1] != 1 for c in columns):
        raise InvalidInput(
            f"expected one input of shape [-1, {n_features}] or {n_features} inputs of shape [-1]"
        )
    if len({c.shape[0] for c in columns}) != 1:
        raise InvalidInput("every input must have the same number of rows")
    return np.hstack(columns).astype(np.float64)


def _as_table(tensors: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """One [rows] or [rows, 1] tensor per fitted feature, by name."""
    check_columns(list(tensors), names, "the inputs do not match the model's features")
    for name in names:
        shape = tensors[name].shape
        if len(shape) not in (1, 2) or shape[1:] not in ((), (1,)):
            raise InvalidInput(f"input {name!r}: expected shape [-1] or [-1, 1], got {list(shape)}")
    return as_table([tensors[name].reshape(-1).tolist() for name in names], names)


_ANSWER_DATATYPES: dict[str, TensorDatatype] = {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}


def datatype_of(values: np.ndarray) -> TensorDatatype:
    return _ANSWER_DATATYPES.get(values.dtype.kind, "BYTES")


def encode_outputs(outputs: dict[str, list[Any]]) -> list[dict[str, Any]]:
    encoded = []
    for name, values in outputs.items():
        array = np.asarray(values)
        encoded.append(
            {
                "name": name,
                "datatype": datatype_of(array),
                "shape": list(array.shape),
                "data": array.reshape(-1).tolist(),
            }
        )
    return encoded


def model_metadata(manifest: Manifest, versions: list[str]) -> V2ModelMetadata:
    signature = manifest.signature
    classes = np.asarray(signature.classes) if signature.classes is not None else np.zeros(0)
    outputs = [
        V2TensorMetadata(
            name="predict", datatype=datatype_of(classes) if classes.size else "FP64", shape=[-1]
        )
    ]
    if "predict_proba" in signature.outputs:
        outputs.append(V2TensorMetadata(name="predict_proba", datatype="FP64", shape=[-1, int(classes.size)]))
    inputs = (
        [
            V2TensorMetadata(name=spec.name, datatype=spec.datatype, shape=spec.shape)
            for spec in signature.inputs
        ]
        if signature.inputs is not None
        else [V2TensorMetadata(name=INPUT_NAME, datatype="FP64", shape=[-1, signature.n_features])]
    )
    return V2ModelMetadata(
        name=manifest.name,
        versions=versions,
        platform=PLATFORMS[manifest.format],
        inputs=inputs,
        outputs=outputs,
        parameters=V2ModelParameters(feature_names=signature.feature_names),
    )
