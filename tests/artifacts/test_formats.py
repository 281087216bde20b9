from __future__ import annotations

import io

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from artifacts.formats import ArtifactError, ArtifactFormat, load_artifact
from artifacts.schema import inspect_schema


def test_skops_pipeline_round_trips_with_its_schema(pipeline: Pipeline, pipeline_skops: bytes) -> None:
    model = load_artifact(pipeline_skops, ArtifactFormat.SKOPS)
    rows = np.random.default_rng(1).normal(size=(20, 6))
    np.testing.assert_array_equal(model.predict(rows), pipeline.predict(rows))
    schema = inspect_schema(model)
    assert schema.n_features == 6
    assert schema.classes == [0, 1]
    assert schema.outputs == ["predict", "predict_proba", "decision_function"]
    assert schema.output_width("decision_function") == 1  # binary: one score


def test_random_forest_loads_through_the_short_trusted_list(
    training_data: tuple[np.ndarray, np.ndarray],
) -> None:
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(*training_data)
    model = load_artifact(sio.dumps(forest), ArtifactFormat.SKOPS)
    np.testing.assert_array_equal(model.predict(training_data[0]), forest.predict(training_data[0]))


class Sneaky:
    def predict(self, rows: object) -> object:
        return rows


def test_skops_with_an_unlisted_type_is_refused_and_named() -> None:
    data = sio.dumps(Sneaky())
    with pytest.raises(ArtifactError, match=r"untrusted types: .*Sneaky"):
        load_artifact(data, ArtifactFormat.SKOPS)


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04truncated"])
def test_corrupt_skops_is_refused(data: bytes) -> None:
    with pytest.raises(ArtifactError, match="skops"):
        load_artifact(data, ArtifactFormat.SKOPS)


def test_a_non_model_is_refused() -> None:
    with pytest.raises(ArtifactError, match="no predict"):
        load_artifact(sio.dumps({"a": 1}), ArtifactFormat.SKOPS)


def test_an_unfitted_model_has_no_schema() -> None:
    with pytest.raises(ArtifactError, match="not fitted"):
        inspect_schema(LogisticRegression())


def test_trusted_joblib_loads(pipeline: Pipeline) -> None:
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    model = load_artifact(buffer.getvalue(), ArtifactFormat.JOBLIB)
    assert inspect_schema(model).n_features == 6


def test_format_comes_from_the_file_name() -> None:
    assert ArtifactFormat.from_filename("m.SKOPS") is ArtifactFormat.SKOPS
    assert ArtifactFormat.from_filename("m.joblib") is ArtifactFormat.JOBLIB
    assert ArtifactFormat.from_filename("m.Onnx") is ArtifactFormat.ONNX
    for name in ("m.pkl", "m", "skops"):
        with pytest.raises(ArtifactError, match=r"expected one of \.skops, \.joblib, \.onnx$"):
            ArtifactFormat.from_filename(name)
