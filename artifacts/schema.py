"""The input schema and outputs of a fitted estimator, as stored in a model's manifest."""

from __future__ import annotations

from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import BaseModel, BeforeValidator

from artifacts.datatypes import TensorDatatype
from artifacts.formats import ArtifactError


def _integral(value: object) -> object:
    """JSON has one kind of number: 4.0 is the integer 4, as JSON Schema's `integer` reads it (and
    as a strict validation, which takes only 4, would not)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_integral)]
# The outputs a model may offer (its signature lists those it does: predict_proba for classifiers,
# transform for transformers and Pipelines that end in one). A version served by ONNX Runtime offers
# predict and predict_proba only (ONNX_OUTPUTS).
OUTPUTS = ["predict", "predict_proba", "transform", "decision_function"]
ONNX_OUTPUTS = ["predict", "predict_proba"]


class TensorSpec(BaseModel):
    """An input a model declares itself (an ONNX graph's), in the Open Inference Protocol's terms."""

    name: str
    datatype: TensorDatatype
    shape: list[int]  # -1: any number of rows


@runtime_checkable
class DeclaresInputs(Protocol):
    """A model that names and types its own inputs (an ONNX graph's adapter)."""

    input_specs: list[TensorSpec]


class ModelSchema(BaseModel):
    n_features: JsonInt
    feature_names: list[str] | None = None
    classes: list[Any] | None = None
    outputs: list[str]
    # The inputs as the model names and types them; None for an estimator (a float matrix).
    inputs: list[TensorSpec] | None = None
    # The columns `transform` answers, as the model names them (get_feature_names_out); None where
    # the model does not say (its width is then known only when it answers).
    transform_columns: list[str] | None = None

    def output_width(self, output: str) -> int | None:
        """The columns an output answers per row; None where only an answer tells."""
        if output == "predict":
            return 1
        if output == "transform":
            return len(self.transform_columns) if self.transform_columns is not None else None
        if self.classes is None:
            return None
        if output == "decision_function" and len(self.classes) == 2:
            return 1  # a binary classifier's one score, for its second class
        return len(self.classes)


def inspect_schema(model: Any) -> ModelSchema:
    """Read the fitted input shape and output kinds; refuse unfitted estimators."""
    n_features = getattr(model, "n_features_in_", None)
    if not isinstance(n_features, int) or n_features < 1:
        raise ArtifactError("model is not fitted: it has no n_features_in_")
    names = getattr(model, "feature_names_in_", None)
    classes = getattr(model, "classes_", None)
    offered = {o for o in OUTPUTS if callable(getattr(model, o, None))}
    if classes is None:
        offered -= {"predict_proba", "decision_function"}
    outputs = [o for o in OUTPUTS if o in offered]
    return ModelSchema(
        n_features=n_features,
        feature_names=[str(n) for n in names] if names is not None else None,
        classes=classes.tolist() if classes is not None else None,
        outputs=outputs,
        inputs=model.input_specs if isinstance(model, DeclaresInputs) else None,
        transform_columns=_transform_columns(model) if "transform" in offered else None,
    )


def _transform_columns(model: Any) -> list[str] | None:
    try:
        names = model.get_feature_names_out()
    except Exception:  # not every transformer names its outputs (or knows how many it makes)
        return None
    return [str(name) for name in names]
