"""A model with a text column on a real fleet (inferrer -> nginx -> 2 nodes): records, CSV with a
header and V2 with a BYTES tensor each answer what the model answers in-process on the same rows."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import tritonclient.http as triton
from sklearn.pipeline import Pipeline

from deploy.ephemeral_fleet import RunningFleet

pytestmark = pytest.mark.fleet

SHUFFLED = ["income", "city", "age"]


@pytest.fixture(scope="module")
def deployed(fleet: RunningFleet, text_column_pipeline: Pipeline) -> RunningFleet:
    """ "people" on the shared fleet, loaded by every node."""
    response = fleet.deploy("people", sio.dumps(text_column_pipeline))
    assert response.status_code == 201, response.text
    assert response.json()["nodes_loaded"] == ["modelhost-1", "modelhost-2", "modelhost-3"]
    assert response.json()["signature"]["feature_names"] == ["age", "income", "city"]
    return fleet


def test_records_with_shuffled_keys_equal_in_process(
    deployed: RunningFleet, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    url = f"{deployed.url}/api/v1/models/people/predict"
    records = [
        {key: row[key] for key in SHUFFLED} for row in json.loads(text_column_rows.to_json(orient="records"))
    ]
    served, nodes = [], set()
    with httpx.Client(timeout=30) as client:
        for record in records:  # one row a request: several nodes answer
            response = client.post(url, json={"records": [record]})
            assert response.status_code == 200, response.text
            served.extend(response.json()["predictions"])
            nodes.add(response.json()["node"])
        proba = client.post(url, json={"records": records, "output": "predict_proba"})
    assert served == text_column_pipeline.predict(text_column_rows).tolist()
    assert len(nodes) >= 2, nodes
    assert proba.status_code == 200, proba.text
    np.testing.assert_allclose(
        proba.json()["predictions"], text_column_pipeline.predict_proba(text_column_rows), rtol=1e-12
    )


@pytest.mark.parametrize("output", ["predict", "predict_proba"])
def test_csv_with_a_shuffled_header_equals_in_process(
    deployed: RunningFleet, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame, output: str
) -> None:
    response = httpx.post(
        f"{deployed.url}/api/v1/models/people/predict",
        content=text_column_rows[SHUFFLED].to_csv(index=False),
        headers={"content-type": "text/csv"},
        params={"output": output},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    expected = getattr(text_column_pipeline, output)(text_column_rows)
    np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-12)


@pytest.mark.parametrize("binary", [True, False])
def test_v2_with_a_bytes_tensor_equals_in_process(
    deployed: RunningFleet, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame, binary: bool
) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{deployed.ports['inferrer']}")
    inputs = []
    for name, datatype, values in (
        ("income", "FP64", text_column_rows["income"].to_numpy(dtype=np.float64)),
        ("city", "BYTES", np.array([c.encode() for c in text_column_rows["city"]], dtype=object)),
        ("age", "INT64", text_column_rows["age"].to_numpy(dtype=np.int64)),
    ):
        tensor = triton.InferInput(name, [len(values)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    result = client.infer("people", inputs, outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("predict"), text_column_pipeline.predict(text_column_rows))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), text_column_pipeline.predict_proba(text_column_rows), rtol=1e-12
    )
