"""The Open Inference Protocol's tensor datatypes: the numbers a request may send, how each is held,
and the names a model's declared inputs and answers use. One table for the V2 codec and for the
inputs an ONNX graph declares."""

from __future__ import annotations

from typing import Literal

import numpy as np

# What a request may send as numbers, and the numpy type each arrives as.
NUMBER_DATATYPES: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
TEXT = "BYTES"  # one UTF-8 string per element: a text column
# The datatypes a model's declared inputs and its answers use.
TensorDatatype = Literal["BOOL", "INT32", "INT64", "UINT64", "FP32", "FP64", "BYTES"]


def numpy_type(datatype: str) -> type[np.generic]:
    """How values of a datatype are held: text as Python strings (numpy object)."""
    return np.object_ if datatype == TEXT else NUMBER_DATATYPES[datatype]
