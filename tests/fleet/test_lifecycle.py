"""Models change while traffic flows: version switches, load on demand, idle unloads, caches."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from tests.harness import RunningFleet, start_fleet, wait_until
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

ROW = [0.3, -1.2, 0.8, 2.0]
TRAVERSALS = ["..", "../etc", "a/../b", "/etc/passwd", "model/", "model/sub", "", " ", "   "]
LOOK_ALIKES = ["model123", "model.version1", "..my_model", "model..1"]


def _skops(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(200, 4))
    return sio.dumps(LogisticRegression().fit(features, (features[:, seed % 4] > 0).astype(int)))


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    """Nodes unload models idle for 2 s; the inferrer caches predictions."""
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("lean")),
        nodes=2,
        extra_args=("--no-example",),
        env={"MODELHOST_IDLE_UNLOAD_S": "2", "INFERRER_PREDICTION_CACHE_SIZE": "100"},
    )
    yield fleet
    assert fleet.stop() == 0


def test_version_switch_under_load(fleet: RunningFleet) -> None:
    assert fleet.deploy("switch", _skops(1)).status_code == 201
    url = f"{fleet.url}/api/v1/models/switch/predict"
    with LoadLoop(url, {"instances": [ROW]}, max_requests=20_000, max_seconds=60) as load:
        assert wait_until(lambda: load.sent > 100, timeout_s=10)
        deployed = fleet.deploy("switch", _skops(2))
        switched_at = time.monotonic()
        assert deployed.status_code == 201 and deployed.json()["active_version"] == "2"
        sent_at_switch = load.sent
        assert wait_until(lambda: load.sent > sent_at_switch + 300, timeout_s=20)
    seen = {version for _, version in load.versions}
    after = {version for sent_at, version in load.versions if sent_at > switched_at}
    print(f"version switch under load: {load.report()}, versions {sorted(seen)}, after: {sorted(after)}")
    assert load.failures == []
    assert seen == {"1", "2"}
    assert after == {"2"}


def test_rollback_and_pinned_versions(fleet: RunningFleet) -> None:
    for seed in (3, 4):
        assert fleet.deploy("roll", _skops(seed)).status_code == 201
    rolled = httpx.post(f"{fleet.url}/api/v1/models/roll/rollback", headers=fleet.auth)
    assert rolled.json()["active_version"] == "1"
    body = {"instances": [ROW]}
    assert httpx.post(f"{fleet.url}/api/v1/models/roll/predict", json=body).json()["version"] == "1"
    pinned = httpx.post(f"{fleet.url}/api/v1/models/roll/versions/2/predict", json=body)
    assert pinned.status_code == 200 and pinned.json()["version"] == "2"
    assert httpx.post(f"{fleet.url}/api/v1/models/roll/versions/9/predict", json=body).status_code == 404
    staged = fleet.deploy("roll", _skops(5), activate="false")
    assert staged.json()["active_version"] == "1"
    activated = httpx.post(f"{fleet.url}/api/v1/models/roll/versions/3/activate", headers=fleet.auth)
    assert activated.json()["active_version"] == "3"


@pytest.mark.parametrize("name", TRAVERSALS)
def test_traversal_names_are_rejected(fleet: RunningFleet, name: str) -> None:
    response = fleet.deploy(name, _skops(1))
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_names_are_accepted(fleet: RunningFleet, name: str) -> None:
    assert fleet.deploy(name, _skops(1)).status_code == 201
    predicted = httpx.post(f"{fleet.url}/api/v1/models/{name}/predict", json={"instances": [ROW]})
    assert predicted.status_code == 200


def test_traversal_in_the_url_finds_nothing(fleet: RunningFleet) -> None:
    for path in ("/api/v1/models/..%2F..%2Fetc%2Fpasswd", "/api/v1/models/%2E%2E"):
        response = httpx.get(fleet.url + path)
        assert response.status_code == 404, (path, response.text)


class Unlisted:
    def predict(self, rows: object) -> object:
        return rows


def test_skops_with_an_unlisted_type_is_refused_by_name(fleet: RunningFleet) -> None:
    response = fleet.deploy("unlisted", sio.dumps(Unlisted()))
    assert response.status_code == 422
    assert "Unlisted" in response.json()["error"]
    assert httpx.get(f"{fleet.url}/api/v1/models/unlisted").status_code == 404


def test_csv_in_and_out(fleet: RunningFleet) -> None:
    assert fleet.deploy("tabular", _skops(6)).status_code == 201
    rows = "0.3,-1.2,0.8,2.0\n1,2,3,4\n"
    url = f"{fleet.url}/api/v1/models/tabular/predict"
    as_json = httpx.post(url, content=rows, headers={"content-type": "text/csv"})
    assert as_json.status_code == 200, as_json.text
    as_csv = httpx.post(url, content=rows, headers={"content-type": "text/csv", "accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.split() == [str(p) for p in as_json.json()["predictions"]]
    bad = httpx.post(url, content="1,2\n", headers={"content-type": "text/csv"})
    assert bad.status_code == 422 and "expected 4 columns" in bad.json()["error"]


def test_node_with_an_empty_cache_converges_by_itself(fleet: RunningFleet) -> None:
    victim = "modelhost-3"
    cache = fleet.data_dir / "cache" / victim
    assert any(cache.iterdir())
    shutil.rmtree(cache)
    pid = fleet.pid(victim)
    os.kill(pid, signal.SIGKILL)

    def converged() -> bool:
        nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
        node = next(n for n in nodes if n["id"] == victim)
        return bool(node["ready"]) and {m["name"] for m in node["models"]} >= {"iris", "switch"}

    assert wait_until(converged, timeout_s=30, interval_s=0.25)
    assert fleet.pid(victim) != pid
    assert any(cache.iterdir()), "the restarted node fetched its artifacts again"


def _loaded_anywhere(fleet: RunningFleet, name: str) -> bool:
    nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
    return any(m["name"] == name for n in nodes for m in n["models"])


def test_idle_models_unload_and_come_back_on_demand(lean: RunningFleet) -> None:
    assert lean.deploy("sleepy", _skops(7)).status_code == 201
    assert wait_until(lambda: not _loaded_anywhere(lean, "sleepy"), timeout_s=20, interval_s=0.5)
    response = httpx.post(f"{lean.url}/api/v1/models/sleepy/predict", json={"instances": [[9, 9, 9, 9]]})
    assert response.status_code == 200, response.text
    nodes = httpx.get(f"{lean.url}/api/v1/nodes", headers=lean.auth).json()["nodes"]
    loaded = [m for n in nodes for m in n["models"] if m["name"] == "sleepy"]
    assert loaded and loaded[0]["cold_start_avg_s"] > 0
    metrics = httpx.get(f"http://127.0.0.1:{lean.node_ports[0]}/metrics").text
    metrics += httpx.get(f"http://127.0.0.1:{lean.node_ports[1]}/metrics").text
    assert 'modelfleet_modelhost_cold_start_duration_seconds_count{model="sleepy"' in metrics


def test_prediction_cache_hits_and_new_versions_miss(lean: RunningFleet) -> None:
    assert lean.deploy("cached", _skops(8)).status_code == 201
    url = f"{lean.url}/api/v1/models/cached/predict"
    first = httpx.post(url, json={"instances": [ROW]}).json()
    second = httpx.post(url, json={"instances": [ROW]}).json()
    assert second["node"] == "cache" and second["predictions"] == first["predictions"]
    assert lean.deploy("cached", _skops(9)).status_code == 201
    third = httpx.post(url, json={"instances": [ROW]}).json()
    assert third["version"] == "2" and third["node"] != "cache"
    metrics = httpx.get(f"{lean.url}/metrics").text
    assert 'modelfleet_inferrer_prediction_cache_hits_total{model="cached"} 1.0' in metrics
