"""The success bodies of the Open Inference Protocol V2 routes (inferrer/api/v2.py, encoded by
inferrer/api/v2_codec.py), as the gateway's OpenAPI document declares them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from artifacts.datatypes import TensorDatatype
from artifacts.formats import ArtifactFormat
from wire.openapi import Answer

Platform = Literal["scikit-learn", "onnxruntime_onnx"]
# What runs a model of each stored format, as the V2 metadata names it.
PLATFORMS: dict[ArtifactFormat, Platform] = {
    ArtifactFormat.SKOPS: "scikit-learn",
    ArtifactFormat.JOBLIB: "scikit-learn",
    ArtifactFormat.ONNX: "onnxruntime_onnx",
}


class V2ServerMetadata(Answer):
    name: str
    version: str
    extensions: list[str]


class V2ServerReady(Answer):
    ready: Literal[True]


class V2ServerNotReady(Answer):
    """503: no node is ready."""

    ready: Literal[False]


class V2TensorMetadata(Answer):
    name: str
    datatype: TensorDatatype
    shape: list[int]  # -1: any number of rows


class V2ModelParameters(Answer):
    feature_names: list[str] | None  # the fitted column names, null for a model fitted on a matrix


class V2ModelMetadata(Answer):
    name: str
    versions: list[str]
    platform: Platform
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]
    parameters: V2ModelParameters


class V2ModelReady(Answer):
    name: str
    version: str
    ready: Literal[True]


class V2ModelNotReady(Answer):
    """503: the version exists but no node is ready."""

    name: str
    version: str
    ready: Literal[False]


class V2OutputTensor(Answer):
    name: str
    datatype: TensorDatatype
    shape: list[int]
    data: list[Any]  # flat, row-major


class V2InferResponse(Answer):
    model_name: str
    model_version: str
    outputs: list[V2OutputTensor]
    # The request's id, when it gave one (absent otherwise, never null).
    id: str | SkipJsonSchema[None] = None


class V2IndexReady(Answer):
    """A stored version some node has loaded."""

    name: str
    version: str
    state: Literal["READY"]


class V2IndexUnavailable(Answer):
    """A stored version no node has loaded: it loads on its next request."""

    name: str
    version: str
    state: Literal["UNAVAILABLE"]
    reason: str


V2RepositoryIndex = list[Annotated[V2IndexReady | V2IndexUnavailable, Field(discriminator="state")]]


class V2ModelLoaded(Answer):
    name: str
    version: str
    nodes_loaded: list[str]


class V2ModelUnloaded(Answer):
    name: str
    nodes_unloaded: list[str]
