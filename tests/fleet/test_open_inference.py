"""The real tritonclient.http against the fleet: health, metadata, infer, versions, errors."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import skops.io as sio
import tritonclient.http as triton
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from artifacts.onnx_conversion import TOLERANCE
from deploy.ephemeral_fleet import RunningFleet

pytestmark = pytest.mark.fleet

ROWS = np.random.default_rng(11).normal(size=(6, 4))


def _model(seed: int) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(300, 4))
    labels = (features @ rng.normal(size=4) > 0).astype(int) + (features[:, 0] > 1).astype(int)
    return LogisticRegression(max_iter=500).fit(features, labels)


@pytest.fixture(scope="module")
def versions(fleet: RunningFleet) -> tuple[RunningFleet, list[LogisticRegression]]:
    """Two versions of "clf" on the shared fleet."""
    models = [_model(1), _model(2)]
    for model in models:
        response = fleet.deploy("clf", sio.dumps(model))
        assert response.status_code == 201, response.text
    return fleet, models


@pytest.fixture
def client(versions: tuple[RunningFleet, list[LogisticRegression]]) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{versions[0].ports['inferrer']}")


def test_server_and_model_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["name"] == "modelfleet"
    metadata = client.get_model_metadata("clf")
    assert metadata["versions"] == ["1", "2"]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]
    assert client.get_model_metadata("clf", "1")["name"] == "clf"
    assert client.is_model_ready("clf")
    assert client.is_model_ready("clf", "1")
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize(
    ("datatype", "dtype"), [("FP32", np.float32), ("FP64", np.float64), ("INT64", np.int64)]
)
@pytest.mark.parametrize("binary", [True, False])
def test_infer_equals_in_process(
    client: triton.InferenceServerClient,
    versions: tuple[RunningFleet, list[LogisticRegression]],
    datatype: str,
    dtype: type[np.generic],
    binary: bool,
) -> None:
    rows = (ROWS * 3).astype(dtype)
    tensor = triton.InferInput("input-0", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows, binary_data=binary)
    outputs = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    result = client.infer("clf", [tensor], outputs=outputs)
    active = versions[1][1]
    expected = rows.astype(np.float64)
    np.testing.assert_array_equal(result.as_numpy("predict"), active.predict(expected))
    # Compiled to ONNX (runtime=auto): within the verified tolerance.
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), active.predict_proba(expected), rtol=0, atol=TOLERANCE
    )
    assert result.get_response()["model_version"] == "2"


def test_pinned_version_infers_with_that_version(
    client: triton.InferenceServerClient, versions: tuple[RunningFleet, list[LogisticRegression]]
) -> None:
    tensor = triton.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS)
    result = client.infer("clf", [tensor], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("predict"), versions[1][0].predict(ROWS))
    assert result.get_response()["model_version"] == "1"


def test_wrong_shape_is_a_clear_error(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("input-0", [3, 2], "FP64")
    tensor.set_data_from_numpy(np.zeros((3, 2)))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 4\], got \[3, 2\]"):
        client.infer("clf", [tensor])


def test_repository_extension(versions: tuple[RunningFleet, list[LogisticRegression]]) -> None:
    url, auth = versions[0].url, versions[0].auth

    def clf_states() -> dict[str, str]:  # the shared fleet holds other models too
        index = httpx.post(f"{url}/v2/repository/index").json()
        return {e["version"]: e["state"] for e in index if e["name"] == "clf"}

    assert set(clf_states()) == {"1", "2"}
    assert httpx.post(f"{url}/v2/repository/models/clf/unload", headers=auth).status_code == 200
    assert clf_states()["2"] == "UNAVAILABLE"
    assert httpx.post(f"{url}/v2/repository/models/clf/load", headers=auth).status_code == 200
    assert clf_states()["2"] == "READY"
    assert httpx.post(f"{url}/v2/repository/models/nope/load", headers=auth).status_code == 404


def test_an_onnx_forest_through_tritonclient_by_its_own_input_name(
    versions: tuple[RunningFleet, list[LogisticRegression]], client: triton.InferenceServerClient
) -> None:
    """An .onnx upload answers V2 by the graph's input name and datatype (FP32), as declared in its
    metadata, with the estimator's own predictions."""
    fleet = versions[0]
    features = np.random.default_rng(12).normal(size=(200, 4)).astype(np.float32)
    forest = RandomForestClassifier(10, max_depth=5, random_state=0).fit(
        features, (features[:, 1] > 0).astype(int)
    )
    graph = to_onnx(forest, features[:1], options={id(forest): {"zipmap": False}})
    deployed = httpx.post(
        f"{fleet.url}/api/v1/models",
        headers=fleet.auth,
        data={"name": "onnx-forest"},
        files={"file": ("forest.onnx", graph.SerializeToString())},
        timeout=60,
    )
    assert deployed.status_code == 201, deployed.text
    metadata = client.get_model_metadata("onnx-forest")
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    rows = features[:16]
    tensor = triton.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    wanted = [triton.InferRequestedOutput(n, binary_data=False) for n in ("predict", "predict_proba")]
    result = client.infer("onnx-forest", [tensor], outputs=wanted)
    assert result.as_numpy("predict").tolist() == forest.predict(rows).tolist()
    assert np.abs(result.as_numpy("predict_proba") - forest.predict_proba(rows)).max() < 1e-5
    assert httpx.delete(f"{fleet.url}/api/v1/models/onnx-forest", headers=fleet.auth).status_code == 200
