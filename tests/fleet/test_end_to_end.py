"""The acceptance path through a real fleet: inferrer -> nginx -> 3 uvicorn nodes, Prometheus."""

from __future__ import annotations

import pickle
import re
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from dotenv import dotenv_values
from sklearn.pipeline import Pipeline

from artifacts.onnx_conversion import TOLERANCE
from deploy.ephemeral_fleet import RunningFleet, wait_until
from tests.harness import README, run_readme_curl_lines

pytestmark = pytest.mark.fleet


def test_self_test_reaches_every_node(fleet: RunningFleet) -> None:
    items = [f"item-{i}" for i in range(30)]
    response = httpx.post(f"{fleet.url}/api/test/sendtomodelhost", json={"data": items}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert [r["item"] for r in body["results"]] == items
    assert set(body["nodes"]) == {"modelhost-1", "modelhost-2", "modelhost-3"}
    assert sum(body["nodes"].values()) == 30
    print("self-test node counts:", body["nodes"])


def test_pipeline_predictions_equal_in_process(
    fleet: RunningFleet, pipeline: Pipeline, pipeline_skops: bytes
) -> None:
    deployed = fleet.deploy("pipe", pipeline_skops)
    assert deployed.status_code == 201, deployed.text
    assert sorted(deployed.json()["nodes_loaded"]) == ["modelhost-1", "modelhost-2", "modelhost-3"]

    rows = np.random.default_rng(3).normal(size=(300, 6))
    expected = pipeline.predict(rows).tolist()
    served: list[int] = []
    nodes: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for row in rows:
            response = client.post(
                f"{fleet.url}/api/v1/models/pipe/predict", json={"instances": [row.tolist()]}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model"] == "pipe" and body["version"] == deployed.json()["version"]
            assert response.headers["x-modelhost-node"] == body["node"]
            served.extend(body["predictions"])
            nodes[body["node"]] += 1
    assert served == expected
    assert set(nodes) == {"modelhost-1", "modelhost-2", "modelhost-3"}
    print("predictions per node:", dict(nodes))

    proba = httpx.post(
        f"{fleet.url}/api/v1/models/pipe/predict",
        json={"instances": rows[:5].tolist(), "output": "predict_proba"},
    ).json()["predictions"]
    np.testing.assert_allclose(proba, pipeline.predict_proba(rows[:5]), rtol=0, atol=TOLERANCE)  # as ONNX


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/v1/models/no-such-model/predict", b'{"instances": [[1]]}', 404, "not found"),
        ("/api/v1/models/iris/predict", b'{"instances": [[1, 2]]}', 422, "expected 4 features"),
        ("/api/v1/models/iris/predict", b'{"instances": [["a", 1, 2, 3]]}', 422, "only numbers"),
        ("/api/v1/models/iris/predict", b'{"instances": [[1, 2, 3', 400, "malformed JSON"),
        ("/api/v1/models/iris/predict", b'{"instances": []}', 422, "non-empty"),
        ("/api/v1/models/iris/predict", b"[1, 2]", 400, "JSON object"),
        ("/api/v1/models/iris/predict", b'{"rows": [[1, 2, 3, 4]]}', 422, "unknown fields"),
        ("/api/v1/models/iris/predict", b'{"records": [{"a": 1}]}', 422, "feature names"),
        ("/api/v1/models/iris/predict", b'{"instances": [[1,2,3,4]], "output": "x"}', 422, "output"),
        ("/api/test/sendtomodelhost", b'{"data": []}', 422, "non-empty list"),
        ("/api/test/sendtomodelhost", b"nope", 400, "malformed JSON"),
    ],
)
def test_bad_input_answers_4xx_json(
    fleet: RunningFleet, path: str, body: bytes, status: int, words: str
) -> None:
    response = httpx.post(fleet.url + path, content=body, timeout=10)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]


def test_prometheus_reports_every_service_up(fleet: RunningFleet) -> None:
    expected = {"inferrer", "modelhost-1", "modelhost-2", "modelhost-3", "nginx"}

    def up_targets() -> set[str]:
        result = httpx.get(f"{fleet.prometheus_url}/api/v1/query", params={"query": "up == 1"})
        series = result.json()["data"]["result"]
        return {s["metric"].get("node", s["metric"]["job"]) for s in series}

    assert wait_until(lambda: up_targets() >= expected, timeout_s=30, interval_s=1), up_targets()


def test_node_metrics_label_model_version_and_node(fleet: RunningFleet) -> None:
    httpx.post(f"{fleet.url}/api/v1/models/iris/predict", json={"instances": [[5, 3, 1, 0.2]]})
    text = "".join(httpx.get(f"http://127.0.0.1:{port}/metrics").text for port in fleet.node_ports)
    assert re.search(
        r'modelfleet_modelhost_predict_duration_seconds_bucket\{le="0.0001",model="iris",'
        r'node="modelhost-\d",version="1"\}',
        text,
    )


def test_readme_curl_lines_work(fleet: RunningFleet, tmp_path: Path) -> None:
    run_readme_curl_lines(fleet.ports["inferrer"], fleet.token, tmp_path, fleet.data_dir / "data")


def test_readme_redis_cli_lines_work(fleet: RunningFleet) -> None:
    """The README's stream walk-through, its redis-cli lines as printed (the broker's port and the
    .env swapped for the fleet's), after its curl lines made the binding: the message added with
    redis-cli comes back predicted in the output stream."""
    lines = [line.strip() for line in README.read_text().splitlines()]
    commands = [line for line in lines if line.startswith(("redis-cli ", "export REDISCLI_AUTH="))]
    assert len(commands) == 3, commands
    port = dotenv_values(fleet.env_file)["BROKER_PORT"]
    script = "\n".join(commands).replace("-p 6390", f"-p {port}").replace("deploy/.env", str(fleet.env_file))
    binding = {"name": "iris-scores", "input": "iris-rows", "output": "iris-scores", "model": "iris"}
    httpx.post(f"{fleet.url}/api/v1/streams", headers=fleet.auth, json=binding, timeout=30)  # 409: made

    def added_and_predicted() -> bool:
        done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{script}"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return "\nkey\nc\n" in done.stdout and "predictions" in done.stdout

    assert wait_until(added_and_predicted, timeout_s=30, interval_s=0.5)


class _TouchOnLoad:
    """Unpickling this creates a file: what a hostile joblib upload would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.path,))


def test_untrusted_joblib_is_refused_without_being_loaded(fleet: RunningFleet, tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    response = httpx.post(
        f"{fleet.url}/api/v1/models",
        headers=fleet.auth,
        data={"name": "evil"},
        files={"file": ("evil.joblib", pickle.dumps(_TouchOnLoad(sentinel)))},
    )
    assert response.status_code == 422
    assert "trusted=true" in response.json()["error"]
    assert not sentinel.exists()
    assert httpx.get(f"{fleet.url}/api/v1/models/evil").status_code == 404


@pytest.mark.parametrize(
    ("fields", "files", "words"),
    [
        ({"name": "broken"}, {"file": ("m.skops", b"PK\x03\x04junk")}, "skops"),
        ({"name": "broken"}, {"file": ("m.txt", b"hello")}, "expected one of .skops, .joblib, .onnx"),
        ({"name": "../etc"}, {"file": ("m.skops", b"x")}, "invalid model name"),
        ({"name": "broken", "version": "a/b"}, {"file": ("m.skops", b"x")}, "invalid version"),
        ({"name": "broken"}, {"file": ("m.skops", b"")}, "empty"),
        ({}, {"file": ("m.skops", b"x")}, "name"),
    ],
)
def test_bad_uploads_change_nothing(
    fleet: RunningFleet, fields: dict[str, str], files: dict[str, tuple[str, bytes]], words: str
) -> None:
    before = httpx.get(f"{fleet.url}/api/v1/models").json()
    response = httpx.post(f"{fleet.url}/api/v1/models", data=fields, files=files, headers=fleet.auth)
    assert response.status_code == 422, response.text
    assert words in response.json()["error"]
    assert httpx.get(f"{fleet.url}/api/v1/models").json() == before
    ok = httpx.post(f"{fleet.url}/api/v1/models/iris/predict", json={"instances": [[5, 3, 1, 0.2]]})
    assert ok.status_code == 200


def test_deploy_list_delete_and_node_views(fleet: RunningFleet, pipeline_skops: bytes) -> None:
    deployed = fleet.deploy("short-lived", pipeline_skops, version="7")
    assert deployed.status_code == 201
    view = httpx.get(f"{fleet.url}/api/v1/models/short-lived").json()
    assert view["active_version"] == "7"
    assert view["versions"][0]["signature"]["n_features"] == 6
    assert "short-lived" in {m["name"] for m in httpx.get(f"{fleet.url}/api/v1/models").json()["models"]}
    again = fleet.deploy("short-lived", pipeline_skops, version="7")
    assert again.status_code == 409

    nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
    assert all(n["live"] and n["ready"] for n in nodes)
    assert all(any(m["name"] == "short-lived" for m in n["models"]) for n in nodes)

    deleted = httpx.delete(f"{fleet.url}/api/v1/models/short-lived", headers=fleet.auth)
    assert deleted.status_code == 200
    assert deleted.json()["deleted_versions"] == ["7"]
    assert len(deleted.json()["nodes_unloaded"]) == 3
    nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
    assert not any(m["name"] == "short-lived" for n in nodes for m in n["models"])
    gone = httpx.post(f"{fleet.url}/api/v1/models/short-lived/predict", json={"instances": [[0] * 6]})
    assert gone.status_code == 404


def test_request_id_is_traced_through_every_hop(fleet: RunningFleet) -> None:
    trace = "trace-e2e-42"
    response = httpx.post(
        f"{fleet.url}/api/v1/models/iris/predict",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        headers={"X-Request-ID": trace},
    )
    assert response.status_code == 200 and response.headers["x-request-id"] == trace
    node = response.json()["node"]
    logs = fleet.data_dir / "run" / "logs"

    def logged_everywhere() -> bool:
        return all(
            trace in (logs / name).read_text(errors="replace")
            for name in ("inferrer.log", "nginx.log", f"{node}.log")
        )

    assert wait_until(logged_everywhere, timeout_s=5)
    generated = httpx.get(f"{fleet.url}/health/live", headers={"X-Request-ID": "not valid!"})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])


def test_oversized_bodies_answer_413_declared_or_chunked(fleet: RunningFleet) -> None:
    url = f"{fleet.url}/api/v1/models/iris/predict"
    big = b"[" + b"1," * (9 * 1024 * 1024) + b"1]"  # ~18 MiB, over the 16 MiB default
    declared = httpx.post(url, content=big, headers={"content-type": "application/json"}, timeout=30)
    assert declared.status_code == 413 and "limit" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    chunked = httpx.post(url, content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert chunked.status_code == 413 and "limit" in chunked.json()["error"]
    ok = httpx.post(url, json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert ok.status_code == 200


def test_rejections_and_in_flight_requests_are_in_metrics(fleet: RunningFleet) -> None:
    httpx.post(f"{fleet.url}/api/v1/models/iris/predict", json={"instances": [[1, 2]]})
    httpx.post(f"{fleet.url}/api/v1/models/no-such/predict", json={"instances": [[1, 2]]})
    text = httpx.get(f"{fleet.url}/metrics").text
    assert re.search(
        r'modelfleet_http_rejected_requests_total\{reason="InvalidInput",service="inferrer"\} [1-9]', text
    )
    assert re.search(
        r'modelfleet_http_rejected_requests_total\{reason="ModelNotFound",service="inferrer"\} [1-9]', text
    )
    assert 'modelfleet_http_requests_in_flight{service="inferrer"} 0.0' in text  # not the scrape itself
    for name in ("batch_queue_depth", "upstream_retries_total"):
        assert f"modelfleet_inferrer_{name}" in text
