"""Management that never disturbs serving, on a gateway of two worker processes.

One model churned (deployed, activated, rolled back and deleted from many threads at once) while
clients predict an untouched model: not one prediction fails, and every raced call answers as the
API documents. Then distinct models deployed at once beside switches of others: each answers its
own predictions, and the final state is exactly what the calls said."""

from __future__ import annotations

import concurrent.futures
import itertools
import time

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import RunningFleet, wait_until
from deploy.example import EXAMPLE_ROW
from deploy.example_model import train_example
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

CHURN_THREADS = 12
CHURN_SECONDS = 8.0
CHURN_CALLS = 400  # at most, whichever ends first
DEPLOYS = 8
SWITCHED = 3  # models activated, rolled back and deleted beside the deploys


@pytest.fixture(scope="module")
def fleet(two_gateways: RunningFleet) -> RunningFleet:
    return two_gateways


def _call(fleet: RunningFleet, method: str, path: str) -> httpx.Response:
    return httpx.request(method, fleet.url + path, headers=fleet.auth, timeout=120)


def _distinct_model(seed: int) -> tuple[bytes, np.ndarray, list[int]]:
    """A 3-feature classifier of its own, a probe row and what it predicts for it."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(60, 3))
    labels = (features @ rng.normal(size=3) > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    probe = rng.normal(size=(4, 3))
    return sio.dumps(model), probe, model.predict(probe).tolist()


def _too_big() -> bytes:
    """A forest of about 1.5 MiB: over every node's memory budget, so no node can load it (deployed
    with runtime=sklearn: its compiled graph would be a fortieth of that)."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(1200, 4))
    forest = RandomForestClassifier(80, random_state=0).fit(features, (features[:, 0] > 0).astype(int))
    data = sio.dumps(forest)
    assert len(data) > 1024 * 1024
    return data


# What each raced call may answer, and what its error must say (docs/api.md, "Versions").
_DOCUMENTED: dict[str, dict[int, str]] = {
    "deploy": {201: "", 409: "was deleted while this deploy was under way"},
    "activate": {200: "", 404: "churned"},
    "rollback": {200: "", 404: "churned"},
    "delete": {200: "", 404: "not found"},
    "predict": {200: "", 404: "churned"},
    # No node has room for it: each node says so, none is taken out of rotation for it.
    "predict-too-big": {503: "memory budget"},
}


def test_one_model_churned_never_fails_another(fleet: RunningFleet) -> None:
    """12 threads deploy, predict, activate, roll back and delete one model, and predict one that no
    node has room for, while 8 clients predict the example model: 0 failed predictions, every raced
    call answered as documented."""
    data = train_example()
    staged = fleet.deploy("too-big", _too_big(), runtime="sklearn")
    assert staged.status_code == 201 and staged.json()["activated"] is False, staged.text
    kinds = itertools.cycle(
        ["deploy", "predict", "predict-too-big", "deploy", "activate", "predict", "rollback", "delete"]
    )
    deadline = time.monotonic() + CHURN_SECONDS
    budget = iter(range(CHURN_CALLS))

    def churn(_: int) -> list[tuple[str, httpx.Response]]:
        done = []
        while time.monotonic() < deadline and next(budget, None) is not None:
            kind = next(kinds)
            if kind == "deploy":
                answer = fleet.deploy("churned", data, timeout_s=120)
            elif kind == "predict":
                answer = httpx.post(
                    f"{fleet.url}/api/v1/models/churned/predict",
                    json={"instances": [EXAMPLE_ROW]},
                    timeout=60,
                )
            elif kind == "predict-too-big":
                answer = httpx.post(
                    f"{fleet.url}/api/v1/models/too-big/versions/1/predict",
                    json={"instances": [EXAMPLE_ROW]},
                    timeout=60,
                )
            elif kind == "activate":
                answer = _call(fleet, "POST", "/api/v1/models/churned/versions/1/activate")
            elif kind == "rollback":
                answer = _call(fleet, "POST", "/api/v1/models/churned/rollback")
            else:
                answer = _call(fleet, "DELETE", "/api/v1/models/churned")
            done.append((kind, answer))
        return done

    url = f"{fleet.url}/api/v1/models/iris/predict"
    with LoadLoop(url, {"instances": [EXAMPLE_ROW]}, 100_000, 300, concurrency=8) as load:
        assert wait_until(lambda: load.sent >= 100, timeout_s=60, interval_s=0.05)
        with concurrent.futures.ThreadPoolExecutor(CHURN_THREADS) as pool:
            calls = [call for done in pool.map(churn, range(CHURN_THREADS)) for call in done]
    statuses = sorted({(kind, answer.status_code) for kind, answer in calls})
    print(f"{len(calls)} churning calls {statuses}; predictions of the untouched model: {load.report()}")

    assert load.failures == [], load.failures[:5]
    assert len(load.answers) >= 100
    for kind, answer in calls:
        documented = _DOCUMENTED[kind]
        assert answer.status_code in documented, (kind, answer.status_code, answer.text)
        assert documented[answer.status_code] in answer.text, (kind, answer.text)
    # How many calls succeeded depends on the machine's speed; that the model is whole afterwards
    # does not: every operation then works, one after another.
    assert _call(fleet, "DELETE", "/api/v1/models/churned").status_code in (200, 404)
    assert fleet.deploy("churned", data, version="1").status_code == 201
    assert fleet.deploy("churned", data, version="2").status_code == 201
    predicted = httpx.post(
        f"{fleet.url}/api/v1/models/churned/predict", json={"instances": [EXAMPLE_ROW]}, timeout=60
    )
    assert predicted.status_code == 200 and predicted.headers["x-model-version"] == "2", predicted.text
    rolled = _call(fleet, "POST", "/api/v1/models/churned/rollback")
    assert rolled.status_code == 200 and rolled.json()["active_version"] == "1", rolled.text
    activated = _call(fleet, "POST", "/api/v1/models/churned/versions/2/activate")
    assert activated.status_code == 200 and activated.json()["active_version"] == "2", activated.text
    assert _call(fleet, "DELETE", "/api/v1/models/churned").status_code == 200
    assert _call(fleet, "DELETE", "/api/v1/models/too-big").status_code == 200


def test_distinct_deploys_beside_switches_end_exactly_as_answered(fleet: RunningFleet) -> None:
    models = {f"distinct-{i}": _distinct_model(seed=i) for i in range(DEPLOYS)}
    example = train_example()
    for i in range(SWITCHED):  # each with two versions, to switch between
        for version in ("1", "2"):
            assert fleet.deploy(f"switched-{i}", example, version=version).status_code == 201

    def deploy(name: str) -> httpx.Response:
        return fleet.deploy(name, models[name][0], timeout_s=120)

    def switch(i: int) -> list[httpx.Response]:
        name = f"switched-{i}"
        return [
            _call(fleet, "POST", f"/api/v1/models/{name}/versions/1/activate"),
            _call(fleet, "POST", f"/api/v1/models/{name}/versions/2/activate"),
            _call(fleet, "POST", f"/api/v1/models/{name}/rollback"),
        ]

    url = f"{fleet.url}/api/v1/models/iris/predict"
    with LoadLoop(url, {"instances": [EXAMPLE_ROW]}, 100_000, 300, concurrency=8) as load:
        assert wait_until(lambda: load.sent >= 100, timeout_s=60, interval_s=0.05)
        with concurrent.futures.ThreadPoolExecutor(DEPLOYS + SWITCHED) as pool:
            deployed = dict(zip(models, pool.map(deploy, models), strict=True))
            switched = list(pool.map(switch, range(SWITCHED)))
    print(f"{DEPLOYS} deploys, {SWITCHED * 3} switches: {load.report()}")
    assert load.failures == [], load.failures[:5]

    for name, answer in deployed.items():
        assert answer.status_code == 201, answer.text
        assert answer.json()["activated"] is True and answer.json()["active_version"] == "1"
        _, probe, expected = models[name]
        predicted = httpx.post(
            f"{fleet.url}/api/v1/models/{name}/predict", json={"instances": probe.tolist()}, timeout=30
        )
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["predictions"] == expected  # its own model, not another's
    for answers in switched:  # one thread per model: each switch sees the one before it
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert [a.json()["active_version"] for a in answers] == ["1", "2", "1"]

    listed = _call(fleet, "GET", "/api/v1/models").json()["models"]
    ours = ("iris", "distinct-", "switched-")  # the fleet is shared: other modules' models aside
    state = {
        m["name"]: (m["active_version"], sorted(v["version"] for v in m["versions"]))
        for m in listed
        if m["name"].startswith(ours)
    }
    assert state == {
        "iris": ("1", ["1"]),
        **{name: ("1", ["1"]) for name in models},
        **{f"switched-{i}": ("1", ["1", "2"]) for i in range(SWITCHED)},
    }

    def nodes_hold_every_active_version() -> bool:
        wanted = {(name, active) for name, (active, _) in state.items()}
        return all(
            wanted <= {(m["name"], m["version"]) for m in fleet.node_view(node)["models"]}
            for node in ("modelhost-1", "modelhost-2")
        )

    assert wait_until(nodes_hold_every_active_version, timeout_s=30, interval_s=0.25)
