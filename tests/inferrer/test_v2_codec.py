"""Open Inference Protocol V2 request decoding: numbers, and BYTES tensors for text columns."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from artifacts.formats import ArtifactFormat
from artifacts.manifest import Manifest
from artifacts.schema import ModelSchema
from inferrer.api.v2_codec import decode_infer_request
from inferrer.errors import InvalidInput

TEXT = ModelSchema(n_features=2, feature_names=["age", "city"], outputs=["predict"])
UNNAMED = ModelSchema(n_features=2, outputs=["predict"])


def _decode(inputs: list[dict[str, Any]], signature: ModelSchema, binary: bytes = b"") -> list[list[object]]:
    header = orjson.dumps({"inputs": inputs})
    manifest = Manifest(
        name="m", version="1", format=ArtifactFormat.SKOPS, sha256="0" * 64, size=1,
        created=datetime.now(UTC), signature=signature,
    )  # fmt: skip
    rows = decode_infer_request(header + binary, len(header) if binary else None, manifest, 10).rows
    return rows.tolist()


def _bytes_elements(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_one_tensor_per_feature_in_any_order_becomes_a_table() -> None:
    inputs = [
        {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["oslo", None]},
        {"name": "age", "shape": [2, 1], "datatype": "INT64", "data": [[52], [1]]},
    ]
    assert _decode(inputs, TEXT) == [[52, "oslo"], [1, None]]


def test_binary_bytes_elements_are_length_prefixed_utf8() -> None:
    text = _bytes_elements("tromsø".encode(), b"")
    inputs: list[dict[str, Any]] = [
        {"name": "city", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(text)}},
        {"name": "age", "shape": [2], "datatype": "FP64", "data": [1.5, 2]},
    ]
    assert _decode(inputs, TEXT, text) == [[1.5, "tromsø"], [2.0, ""]]


def test_numeric_models_keep_a_float_matrix() -> None:
    rows = _decode([{"name": "input-0", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}], UNNAMED)
    assert rows == [[1.0, 2.0]]


@pytest.mark.parametrize(
    ("inputs", "binary", "words"),
    [
        (
            [{"name": "age", "shape": [1], "datatype": "FP64", "data": [1]}],
            b"",
            r"missing features \['city'\]",
        ),
        (
            [
                {"name": "age", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["a"]},
                {"name": "zip", "shape": [1], "datatype": "BYTES", "data": ["0150"]},
            ],
            b"",
            r"unknown features \['zip'\]",
        ),
        (
            [
                {"name": "age", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "age", "shape": [1], "datatype": "FP64", "data": [1]},
            ],
            b"",
            "given twice",
        ),
        (
            [
                {"name": "age", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["a"]},
            ],
            b"",
            "same number of rows",
        ),
        ([{"name": "city", "shape": [1], "datatype": "BYTES", "data": [3]}], b"", "list of strings"),
        ([{"name": "city", "shape": [1], "datatype": "STRING", "data": ["a"]}], b"", "is not one of"),
        (
            [{"name": "city", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
            struct.pack("<I", 9) + b"ab",
            "ends inside an element",
        ),
        (
            [{"name": "city", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}],
            struct.pack("<I", 2) + b"\xff\xfe",
            "UTF-8",
        ),
        (
            [
                {"name": "age", "shape": [0], "datatype": "BOOL", "data": []},
                {"name": "city", "shape": [0], "datatype": "BOOL", "data": []},
            ],
            b"",
            "at least one value",
        ),  # found by schemathesis: empty tensors were a 500
        # What the request schema refuses, the decoder refuses too (400), never a server error.
        ([{"name": "age", "shape": [1], "datatype": "INT8", "data": [300]}], b"", "INT8 numbers"),
        ([{"name": "age", "shape": [1], "datatype": "INT64", "data": [1e400]}], b"", "INT64 numbers"),
        ([{"name": "age", "shape": [True], "datatype": "FP64", "data": [1]}], b"", "non-negative integers"),
        ([{"name": "age", "shape": [1], "datatype": "FP64"}], b"", "data \\(a list\\) or binary_data_size"),
        ([{"name": "age", "shape": [1], "datatype": "FP64", "data": 1}], b"", "data \\(a list\\)"),
        (
            [{"name": "age", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8.0}}],
            struct.pack("<d", 1.0),
            "binary_data_size must be a non-negative integer",
        ),
    ],
)
def test_bad_inputs_name_the_problem(inputs: list[dict[str, Any]], binary: bytes, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        _decode(inputs, TEXT, binary)


def test_bytes_need_a_model_fitted_with_feature_names() -> None:
    inputs = [{"name": "input-0", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]
    with pytest.raises(InvalidInput, match="fitted with feature names"):
        _decode(inputs, UNNAMED)


@pytest.mark.parametrize(
    ("extra", "words"),
    [({"id": 7}, '"id" must be a string'), ({"outputs": [{"name": 1}]}, '"outputs" must be a list')],
)
def test_an_id_and_outputs_are_as_declared(extra: dict[str, Any], words: str) -> None:
    inputs = [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]
    manifest = Manifest(
        name="m", version="1", format=ArtifactFormat.SKOPS, sha256="0" * 64, size=1,
        created=datetime.now(UTC), signature=UNNAMED,
    )  # fmt: skip
    with pytest.raises(InvalidInput, match=words):
        decode_infer_request(orjson.dumps({"inputs": inputs, **extra}), None, manifest, 10)
