"""Auth on real processes: management needs the management token, inference the inference token
when one is set, the nodes' internal routes are closed to the public port, and the first
`modelfleet up` generated the management token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.ephemeral_fleet import RunningFleet, start_fleet
from deploy.example_model import train_example
from wire.bearer import INFERENCE_TOKEN_VAR, bearer_headers

pytestmark = pytest.mark.fleet

INFERENCE_TOKEN = "inference-token-for-tests-0123456789"
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}

# (method, path, body kind): every management route of the inferrer.
MANAGEMENT_ROUTES = [
    ("POST", "/api/v1/models", "upload"),
    ("DELETE", "/api/v1/models/iris", None),
    ("POST", "/api/v1/models/iris/versions/1/activate", None),
    ("POST", "/api/v1/models/iris/rollback", None),
    ("POST", "/v2/repository/models/iris/load", None),
    ("POST", "/v2/repository/models/iris/unload", None),
    ("GET", "/api/v1/nodes", None),
    ("POST", "/api/v1/nodes/modelhost-1/drain", None),
    ("GET", "/internal/v1/desired", None),
]
INFERENCE_ROUTES = [
    ("POST", "/api/v1/models/iris/predict", ROW),
    ("POST", "/api/v1/models/iris/versions/1/predict", ROW),
    ("GET", "/api/v1/models", None),
    ("GET", "/api/v1/models/iris", None),
    ("GET", "/v2/models/iris", None),
    ("POST", "/v2/repository/index", None),
    ("POST", "/api/test/sendtomodelhost", {"data": ["A"]}),
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("auth")), nodes=2, env_lines=f"{INFERENCE_TOKEN_VAR}={INFERENCE_TOKEN}\n"
    )
    yield fleet
    assert fleet.stop() == 0


def _call(
    fleet: RunningFleet, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    url = fleet.url + path
    if body == "upload":
        files = {"file": ("m.skops", train_example())}
        return httpx.post(url, data={"name": "intruder"}, files=files, headers=headers, timeout=30)
    return httpx.request(method, url, json=body, headers=headers, timeout=30)


def _state(fleet: RunningFleet) -> object:
    models = httpx.get(f"{fleet.url}/api/v1/models", headers=fleet.auth).json()
    nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
    loaded = [[(m["name"], m["version"], m["sha256"]) for m in n["models"]] for n in nodes]
    return models, [(n["id"], n["ready"], n["draining"]) for n in nodes], loaded


def test_first_up_generated_and_printed_the_management_token(guarded: RunningFleet) -> None:
    assert len(guarded.token) >= 40
    assert guarded.token in guarded.log()
    assert guarded.env_file.stat().st_mode & 0o077 == 0  # the .env holds a secret: owner only


def test_management_routes_refuse_missing_wrong_and_inference_tokens(guarded: RunningFleet) -> None:
    before = _state(guarded)
    refusals = {"missing": 0, "wrong": 0, "inference": 0}
    for method, path, body in MANAGEMENT_ROUTES:
        for case, headers, status in [
            ("missing", {}, 401),
            ("wrong", bearer_headers("x" * 43), 401),
            ("inference", bearer_headers(INFERENCE_TOKEN), 403),
        ]:
            response = _call(guarded, method, path, body, headers)
            assert response.status_code == status, (method, path, case, response.text)
            assert response.json()["error"], response.text
            if status == 401:
                assert response.headers["www-authenticate"] == "Bearer"
            refusals[case] += 1
    print(f"management routes: {len(MANAGEMENT_ROUTES)}, refused: {refusals}")
    assert _state(guarded) == before  # nothing was deployed, deleted, drained or unloaded


def test_inference_needs_the_inference_token_when_one_is_set(guarded: RunningFleet) -> None:
    for method, path, body in INFERENCE_ROUTES:
        assert _call(guarded, method, path, body, {}).status_code == 401, path
        assert _call(guarded, method, path, body, bearer_headers("y" * 43)).status_code == 401, path
        for token in (INFERENCE_TOKEN, guarded.token):
            response = _call(guarded, method, path, body, bearer_headers(token))
            assert response.status_code == 200, (path, response.text)
    public = ["/", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/v2/health/live"]
    assert all(httpx.get(guarded.url + path).status_code == 200 for path in public)


def test_nginx_and_the_nodes_refuse_calls_without_the_fleet_credential(guarded: RunningFleet) -> None:
    """Straight to nginx's port or a node's: no prediction, no self-test ping, no model control and
    no on-demand load without the management token (what the inferrer sends); nothing changes."""
    before = _state(guarded)
    nginx = f"http://127.0.0.1:{guarded.ports['nginx']}"
    node = f"http://127.0.0.1:{guarded.node_ports[0]}"
    sha256 = httpx.get(f"{guarded.url}/api/v1/models/iris", headers=guarded.auth).json()["versions"][0][
        "served_sha256"
    ]
    predict = ("POST", "/api/v1/models/iris/predict", {"version": "1", "sha256": sha256, **ROW})
    calls = [
        predict,
        ("GET", "/api/test/ping/x", None),
        ("GET", "/", None),
        ("GET", "/internal/v1/models", None),
        ("POST", "/internal/v1/drain", None),
        ("POST", "/internal/v1/sync", {"release": ["iris"]}),
        ("POST", "/internal/v1/partitions", {"job_id": "j", "partition": 0}),
    ]
    for method, path, body in calls:
        for headers in ({}, bearer_headers("z" * 43), bearer_headers(INFERENCE_TOKEN)):
            answer = httpx.request(method, node + path, json=body, headers=headers)
            assert answer.status_code == 401, (path, headers, answer.text)
            through = httpx.request(method, nginx + path, json=body, headers=headers)
            # nginx balances only predict, ping and partitions (the node refuses them); nothing else.
            assert through.status_code in (401, 404), (path, headers, through.text)
            balanced = path.startswith(("/api/v1", "/api/test", "/internal/v1/partitions"))
            assert through.status_code == 401 or not balanced, path
    # With the fleet's credential, nginx balances the prediction (what the inferrer does).
    method, path, body = predict
    allowed = httpx.request(method, nginx + path, json=body, headers=guarded.auth)
    assert allowed.status_code == 200, allowed.text
    assert _state(guarded) == before
