"""Models with text columns, in-process: the gateway and a node built by their app factories and served
by uvicorn on loopback (the gateway's balancer URL points at the node), no nginx."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import tritonclient.http as triton
import uvicorn
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tritonclient.utils import InferenceServerException

from deploy.ephemeral_fleet import free_ports, wait_until
from inferrer.app import create_app as create_gateway
from inferrer.settings import InferrerSettings
from modelhost.app import create_app as create_node
from modelhost.settings import ModelhostSettings
from wire.bearer import bearer_headers

TOKEN = "in-process-management-token"
SHUFFLED = ["city", "income", "age"]


async def _serve(servers: list[uvicorn.Server]) -> None:
    await asyncio.gather(*(server.serve() for server in servers))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway's URL; one node behind it. Batches queue behind one call, and answers are cached."""
    tmp = Path(tmp_path_factory.mktemp("in-process"))
    gateway_port, node_port = free_ports(2)
    gateway_url, node_url = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{node_port}"
    (tmp / "nodes.json").write_text(json.dumps({"modelhost-1": node_url}))
    node = create_node(
        ModelhostSettings(
            node_id="modelhost-1", inferrer_url=gateway_url, cache_dir=tmp / "cache", management_token=TOKEN
        )
    )
    settings = InferrerSettings(
        repository_dir=tmp / "repository",
        data_dir=tmp / "data",
        nginx_url=node_url,
        nodes_file=tmp / "nodes.json",
        management_token=TOKEN,
        batch_max_in_flight=1,
        batch_max_wait_s=0.05,
        prediction_cache_size=100,
    )
    servers = [
        uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        for app, port in ((create_gateway(settings), gateway_port), (node, node_port))
    ]
    thread = threading.Thread(target=asyncio.run, args=(_serve(servers),), daemon=True)
    thread.start()
    assert wait_until(lambda: all(server.started for server in servers), timeout_s=30)
    yield gateway_url
    for server in servers:
        server.should_exit = True
    thread.join(timeout=30)


def _deploy(url: str, name: str, model: Any) -> None:
    response = httpx.post(
        f"{url}/api/v1/models",
        headers=bearer_headers(TOKEN),
        data={"name": name},
        files={"file": (f"{name}.skops", sio.dumps(model))},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    assert response.json()["nodes_loaded"] == ["modelhost-1"]


@pytest.fixture(scope="module")
def mixed(gateway: str, text_column_pipeline: Pipeline) -> str:
    _deploy(gateway, "mixed", text_column_pipeline)
    return f"{gateway}/api/v1/models/mixed/predict"


def _records(frame: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    """JSON records with their keys in the order `keys` (NaN becomes null)."""
    rows = json.loads(frame.to_json(orient="records"))
    return [{key: row[key] for key in keys} for row in rows]


def _predict(url: str, **body: Any) -> Any:
    response = httpx.post(url, json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_records_with_shuffled_keys_equal_in_process(
    mixed: str, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    records = _records(text_column_rows, SHUFFLED)
    assert list(records[0]) == SHUFFLED and isinstance(records[0]["city"], str)
    assert _predict(mixed, records=records) == text_column_pipeline.predict(text_column_rows).tolist()
    proba = _predict(mixed, records=records, output="predict_proba")
    np.testing.assert_allclose(proba, text_column_pipeline.predict_proba(text_column_rows), rtol=1e-12)


def test_csv_with_a_header_in_another_column_order_equals_in_process(
    mixed: str, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    body = text_column_rows[SHUFFLED].to_csv(index=False)
    assert body.startswith("city,income,age\n")
    response = httpx.post(
        mixed, content=body, headers={"content-type": "text/csv"}, params={"output": "predict"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == text_column_pipeline.predict(text_column_rows).tolist()


@pytest.mark.parametrize("binary", [True, False])
def test_v2_with_a_bytes_tensor_equals_in_process(
    mixed: str,
    gateway: str,
    text_column_pipeline: Pipeline,
    text_column_rows: pd.DataFrame,
    binary: bool,
) -> None:
    client = triton.InferenceServerClient(url=gateway.removeprefix("http://"))
    inputs = []
    for name, datatype, values in (
        ("city", "BYTES", text_column_rows["city"].to_numpy(dtype=object)),
        ("age", "INT64", text_column_rows["age"].to_numpy(dtype=np.int64)),
        ("income", "FP64", text_column_rows["income"].to_numpy(dtype=np.float64)),
    ):
        tensor = triton.InferInput(name, [len(values)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    result = client.infer("mixed", inputs)
    np.testing.assert_array_equal(result.as_numpy("predict"), text_column_pipeline.predict(text_column_rows))
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), text_column_pipeline.predict_proba(text_column_rows), rtol=1e-12
    )
    with pytest.raises(InferenceServerException, match=r"missing features \['city'\]"):
        client.infer("mixed", inputs[1:])


def test_nulls_and_empty_fields_arrive_as_nan(gateway: str, text_column_rows: pd.DataFrame) -> None:
    """A pipeline that imputes: null (JSON) and an empty field (CSV) are NaN, in either kind of column."""
    imputing = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="unknown"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["city"],
            ),
        ]
    )
    training = pd.concat([text_column_rows] * 5, ignore_index=True)
    training.loc[::4, "city"] = "unknown"
    model = Pipeline([("columns", imputing), ("classify", LogisticRegression())])
    model.fit(training, np.arange(len(training)) % 2)
    _deploy(gateway, "imputing", model)
    url = f"{gateway}/api/v1/models/imputing/predict"

    holes = text_column_rows.astype({"age": float})
    holes.loc[[0, 3], "age"] = np.nan
    holes.loc[[1, 3], "city"] = np.nan
    expected = model.predict_proba(holes)
    records = _records(holes, SHUFFLED)
    assert records[3]["age"] is None and records[3]["city"] is None
    np.testing.assert_allclose(_predict(url, records=records, output="predict_proba"), expected, rtol=1e-12)
    alone = _predict(url, records=records[3:4], output="predict_proba")  # a column of nulls only
    np.testing.assert_allclose(alone, expected[3:4], rtol=1e-12)
    csv_body = holes[SHUFFLED].to_csv(index=False)
    assert re.fullmatch(r",[0-9.]+,", csv_body.splitlines()[4])  # row 3: empty city and age
    response = httpx.post(
        url, content=csv_body, headers={"content-type": "text/csv"}, params={"output": "predict_proba"}
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"records": [{"age": 52, "income": 71234.5}]}, "record 0: missing features ['city']"),
        (
            {"records": [{"age": 52, "income": 7.5, "city": "oslo", "zip": "0150"}]},
            "record 0: unknown features ['zip']",
        ),
        (
            {"records": [{"age": 52, "city": "oslo", "zip": 1}]},
            "missing features ['income'], unknown features ['zip']",
        ),
        ({"records": [{"age": 52, "income": 7.5, "city": ["oslo"]}]}, "feature 'city': values must be"),
        ({"instances": [[52, 71234.5, "oslo"]]}, "only numbers"),  # instances stay numeric
    ],
)
def test_missing_and_unknown_record_fields_are_422_naming_them(
    mixed: str, body: dict[str, Any], words: str
) -> None:
    response = httpx.post(mixed, json=body, timeout=10)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("age,income\n52,7.5\n", "missing features ['city']"),
        ("age,income,city,zip\n52,7.5,oslo,0150\n", "unknown features ['zip']"),
        ("age,age,city\n52,52,oslo\n", "missing features ['income'], repeated features ['age']"),
    ],
)
def test_missing_and_unknown_csv_columns_are_422_naming_them(mixed: str, body: str, words: str) -> None:
    response = httpx.post(mixed, content=body, headers={"content-type": "text/csv"}, timeout=10)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]


def test_a_value_the_model_refuses_fails_its_own_request_only(
    mixed: str, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    """Concurrent requests batch together; text in a numeric column makes the node answer 422 (the
    gateway cannot know the column's kind), and only the request that sent it gets that answer."""
    records = _records(text_column_rows, SHUFFLED)
    bad = {**records[0], "age": "old"}
    bodies = [{"records": [record]} for record in records] * 3 + [{"records": [bad]}]
    expected = text_column_pipeline.predict(text_column_rows).tolist() * 3

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(client.post(mixed, json=body) for body in bodies))

    rows_before, calls_before = _batch_counts(mixed)
    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * len(expected) + [422], [r.text for r in responses]
    assert [r.json()["predictions"][0] for r in responses[:-1]] == expected
    assert "model rejected the input" in responses[-1].json()["error"]
    rows_after, calls_after = _batch_counts(mixed)
    # Fewer upstream calls than rows sent by these requests (resends alone included): they batched.
    assert calls_after - calls_before < rows_after - rows_before, (rows_after - rows_before, calls_after)


def _batch_counts(url: str) -> tuple[float, float]:
    """Rows sent upstream for model "mixed", and the calls that carried them, from /metrics."""
    metrics = httpx.get(url.split("/api/")[0] + "/metrics").text
    values = {
        line.split("{")[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith(("modelfleet_inferrer_batch_rows_sum", "modelfleet_inferrer_batch_rows_count"))
        and 'model="mixed"' in line
    }
    return values["modelfleet_inferrer_batch_rows_sum"], values["modelfleet_inferrer_batch_rows_count"]


def test_cached_answers_tell_text_values_apart(mixed: str, text_column_pipeline: Pipeline) -> None:
    row = {"age": 33, "income": 61000.0, "city": "oslo"}
    for city in ["oslo", "bergen", "oslo", "tromso", "nowhere", "bergen"]:
        frame = pd.DataFrame([{**row, "city": city}])
        proba = _predict(mixed, records=[{**row, "city": city}], output="predict_proba")
        np.testing.assert_allclose(proba, text_column_pipeline.predict_proba(frame), rtol=1e-12)
    again = httpx.post(mixed, json={"records": [{**row, "city": "tromso"}], "output": "predict_proba"})
    assert again.json()["node"] == "cache"


def test_numeric_models_are_unchanged(gateway: str) -> None:
    rng = np.random.default_rng(4)
    features = rng.normal(size=(100, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    _deploy(gateway, "numeric", model)
    url = f"{gateway}/api/v1/models/numeric/predict"
    rows = rng.normal(size=(5, 3))
    assert _predict(url, instances=rows.tolist()) == model.predict(rows).tolist()
    csv_body = "\n".join(",".join(str(v) for v in row) for row in rows)
    response = httpx.post(url, content=csv_body, headers={"content-type": "text/csv"})
    assert response.json()["predictions"] == model.predict(rows).tolist()
    refused = httpx.post(url, json={"records": [{"a": 1.0}]})
    assert refused.status_code == 422 and "without feature names" in refused.json()["error"]
    client = triton.InferenceServerClient(url=gateway.removeprefix("http://"))
    tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    np.testing.assert_array_equal(client.infer("numeric", [tensor]).as_numpy("predict"), model.predict(rows))
    text = triton.InferInput("x", [1], "BYTES")
    text.set_data_from_numpy(np.array(["a"], dtype=object))
    with pytest.raises(InferenceServerException, match="fitted with feature names"):
        client.infer("numeric", [text])
