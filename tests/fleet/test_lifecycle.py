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

from deploy.ephemeral_fleet import RunningFleet, start_fleet, wait_until
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

ROW = [0.3, -1.2, 0.8, 2.0]
# Rows far from the models' boundary (feature 0 = 0), on both sides of it.
ROWS = [ROW, [-1.0, 0.5, -0.3, 1.2], [1.5, 1.0, -2.0, -0.5], [-0.7, -0.9, 1.1, 0.4]]
FEATURES = np.random.default_rng(0).normal(size=(200, 4))
TRAVERSALS = ["..", "../etc", "a/../b", "/etc/passwd", "model/", "model/sub", "", " ", "   "]
LOOK_ALIKES = ["model123", "model.version1", "..my_model", "model..1"]


def _fit(classes: tuple[int, int]) -> LogisticRegression:
    """Class `classes[0]` where feature 0 > 0, else `classes[1]`: models fitted with other classes
    (e.g. (1, 0) and (0, 1), i.e. labels y and 1 - y) answer differently on every row of ROWS."""
    return LogisticRegression().fit(FEATURES, np.where(FEATURES[:, 0] > 0, *classes))


def _skops(classes: tuple[int, int] = (1, 0)) -> bytes:
    return sio.dumps(_fit(classes))


def _expected(*models: LogisticRegression) -> dict[str, list[int]]:
    """Each version's predictions on ROWS, computed in-process; versions are numbered from 1."""
    expected = {str(v): m.predict(ROWS).tolist() for v, m in enumerate(models, start=1)}
    per_row = zip(*expected.values(), strict=True)
    assert all(len(set(row)) == len(models) for row in per_row), "the versions must differ on every row"
    return expected


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
    first, second = _fit((1, 0)), _fit((0, 1))  # labels y, then 1 - y: every row flips
    expected = _expected(first, second)
    assert fleet.deploy("switch", sio.dumps(first)).status_code == 201
    url = f"{fleet.url}/api/v1/models/switch/predict"
    with LoadLoop(url, {"instances": ROWS}, max_requests=20_000, max_seconds=60, concurrency=16) as load:
        assert wait_until(lambda: load.sent > 100, timeout_s=10)
        deployed = fleet.deploy("switch", sio.dumps(second))
        switched_at = time.monotonic()
        assert deployed.status_code == 201 and deployed.json()["active_version"] == "2"
        sent_at_switch = load.sent
        assert wait_until(lambda: load.sent > sent_at_switch + 300, timeout_s=20)
    answers = load.snapshot()
    seen = {str(a.version) for a in answers}
    after = {str(a.version) for a in answers if a.sent_at > switched_at}
    print(f"version switch under load: {load.report()}, versions {sorted(seen)}, after: {sorted(after)}")
    assert load.failures == [], load.failures[:5]
    assert seen == {"1", "2"}
    assert after == {"2"}
    # Every answer is the named version's: no answer of one version carries the other's predictions.
    wrong = [a for a in answers if a.predictions != expected[str(a.version)]]
    assert wrong == [], wrong[:3]


def test_rollback_and_pinned_versions(fleet: RunningFleet) -> None:
    models = [_fit((1, 0)), _fit((0, 1)), _fit((2, 3))]
    expected = _expected(*models)
    body = {"instances": ROWS}

    def predict(path: str = "") -> dict[str, object]:
        response = httpx.post(f"{fleet.url}/api/v1/models/roll{path}/predict", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, object] = response.json()
        assert answer["predictions"] == expected[str(answer["version"])], answer
        return answer

    for model in models[:2]:
        assert fleet.deploy("roll", sio.dumps(model)).status_code == 201
    assert predict()["version"] == "2"
    rolled = httpx.post(f"{fleet.url}/api/v1/models/roll/rollback", headers=fleet.auth)
    assert rolled.json()["active_version"] == "1"
    assert predict()["version"] == "1"
    assert predict("/versions/2")["version"] == "2"
    assert httpx.post(f"{fleet.url}/api/v1/models/roll/versions/9/predict", json=body).status_code == 404
    staged = fleet.deploy("roll", sio.dumps(models[2]), activate="false")
    assert staged.json()["active_version"] == "1"
    assert predict()["version"] == "1"
    assert predict("/versions/3")["version"] == "3"  # staged, and served when pinned
    activated = httpx.post(f"{fleet.url}/api/v1/models/roll/versions/3/activate", headers=fleet.auth)
    assert activated.json()["active_version"] == "3"
    assert predict()["version"] == "3"
    assert predict("/versions/1")["version"] == "1"


@pytest.mark.parametrize("name", TRAVERSALS)
def test_traversal_names_are_rejected(fleet: RunningFleet, name: str) -> None:
    response = fleet.deploy(name, _skops())
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()


@pytest.mark.parametrize("name", LOOK_ALIKES)
def test_look_alike_names_are_accepted(fleet: RunningFleet, name: str) -> None:
    assert fleet.deploy(name, _skops()).status_code == 201
    predicted = httpx.post(f"{fleet.url}/api/v1/models/{name}/predict", json={"instances": ROWS})
    assert predicted.status_code == 200
    assert predicted.json()["predictions"] == _fit((1, 0)).predict(ROWS).tolist()


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
    assert fleet.deploy("tabular", _skops()).status_code == 201
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
    assert fleet.deploy("converge", _skops()).status_code == 201  # its own model, on every node
    victim = "modelhost-3"
    cache = fleet.data_dir / "cache" / victim
    assert any(cache.iterdir())
    shutil.rmtree(cache)
    pid = fleet.pid(victim)
    os.kill(pid, signal.SIGKILL)

    def converged() -> bool:
        nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
        node = next(n for n in nodes if n["id"] == victim)
        return bool(node["ready"]) and {m["name"] for m in node["models"]} >= {"iris", "converge"}

    assert wait_until(converged, timeout_s=30, interval_s=0.25)
    assert fleet.pid(victim) != pid
    assert any(cache.iterdir()), "the restarted node fetched its artifacts again"


def _loaded_anywhere(fleet: RunningFleet, name: str) -> bool:
    nodes = httpx.get(f"{fleet.url}/api/v1/nodes", headers=fleet.auth).json()["nodes"]
    return any(m["name"] == name for n in nodes for m in n["models"])


def test_idle_models_unload_and_come_back_on_demand(lean: RunningFleet) -> None:
    assert lean.deploy("sleepy", _skops()).status_code == 201
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
    expected = _expected(_fit((1, 0)), _fit((0, 1)))
    assert lean.deploy("cached", _skops((1, 0))).status_code == 201
    url = f"{lean.url}/api/v1/models/cached/predict"
    first = httpx.post(url, json={"instances": ROWS}).json()
    second = httpx.post(url, json={"instances": ROWS}).json()
    assert first["node"] != "cache" and first["predictions"] == expected["1"]
    assert second["node"] == "cache" and second["predictions"] == expected["1"]
    assert lean.deploy("cached", _skops((0, 1))).status_code == 201
    third = httpx.post(url, json={"instances": ROWS}).json()
    assert third["version"] == "2" and third["node"] != "cache"
    assert third["predictions"] == expected["2"]  # not version 1's cached answer
    metrics = httpx.get(f"{lean.url}/metrics").text
    assert 'modelfleet_inferrer_prediction_cache_hits_total{model="cached"} 1.0' in metrics
