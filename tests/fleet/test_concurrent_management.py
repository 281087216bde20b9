"""Management that never disturbs serving: many deploys of one new name, with deletes and
activations of other models beside them, on a gateway of two worker processes, while an untouched
model serves at concurrency 16."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.example import EXAMPLE_ROW
from deploy.example_model import train_example
from tests.harness import RunningFleet, start_fleet, wait_until
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

DEPLOYS = 20
OTHERS = 4  # models deleted and re-activated beside the deploys


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = start_fleet(
        Path(tmp_path_factory.mktemp("management")),
        nodes=2,
        extra_args=("--inferrer-workers", "2"),
        # Every version kept, so that the test can check that each 201's version exists at the end
        # (retention under concurrent deploys: test_retention.py).
        env={"INFERRER_KEEP_VERSIONS": "0"},
    )
    yield running
    assert running.stop() == 0


def _call(fleet: RunningFleet, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, fleet.url + path, headers=fleet.auth, timeout=120, **kwargs)


def test_concurrent_deploys_deletes_and_switches_never_disturb_serving(fleet: RunningFleet) -> None:
    model = train_example()
    for i in range(OTHERS):  # each with two versions, to switch between
        for _ in range(2):
            assert fleet.deploy(f"other-{i}", model).status_code == 201

    def deploy_new(_: int) -> httpx.Response:
        return fleet.deploy("fresh", model, timeout_s=120)

    def churn(i: int) -> list[httpx.Response]:
        name = f"other-{i}"
        return [
            _call(fleet, "POST", f"/api/v1/models/{name}/versions/1/activate"),
            _call(fleet, "POST", f"/api/v1/models/{name}/rollback"),
            _call(fleet, "DELETE", f"/api/v1/models/{name}"),
        ]

    url = f"{fleet.url}/api/v1/models/iris/predict"
    with LoadLoop(url, {"instances": [EXAMPLE_ROW]}, max_requests=100_000, max_seconds=300) as load:
        assert wait_until(lambda: load.sent >= 200, timeout_s=60, interval_s=0.05)
        with concurrent.futures.ThreadPoolExecutor(DEPLOYS + OTHERS) as pool:
            deploys = pool.map(deploy_new, range(DEPLOYS))
            churned = pool.map(churn, range(OTHERS))
            deployed = list(deploys)
            changes = [r for answers in churned for r in answers]
        sent_during = load.sent
    print(f"{DEPLOYS} deploys, {len(changes)} switches/deletes, {sent_during} predictions: {load.report()}")

    assert load.failures == [], load.failures[:5]
    assert [r.status_code for r in deployed] == [201] * DEPLOYS, [
        r.text for r in deployed if r.status_code != 201
    ]
    # A rollback may find the other version gone (deleted first) or be the one already active: 404 or
    # 409 then, never a 500; the delete always succeeds (nothing else deletes these).
    assert all(r.status_code < 500 for r in changes), [r.text for r in changes if r.status_code >= 500]
    versions = sorted(r.json()["version"] for r in deployed)
    assert versions == sorted(str(n) for n in range(1, DEPLOYS + 1))  # each deploy its own version

    view = _call(fleet, "GET", "/api/v1/models/fresh").json()
    assert sorted(v["version"] for v in view["versions"]) == versions  # every 201's version exists
    # The rule: a deploy never activates over a version created after it that is active already.
    assert view["active_version"] == max(view["versions"], key=lambda v: v["created"])["version"]
    listed = {m["name"] for m in _call(fleet, "GET", "/api/v1/models").json()["models"]}
    assert listed == {"iris", "fresh"}

    def nodes_agree() -> bool:
        for node in ("modelhost-1", "modelhost-2"):
            held = {(m["name"], m["version"]) for m in fleet.node_view(node)["models"]}
            if not {("iris", "1"), ("fresh", view["active_version"])} <= held:
                return False
            if any(name.startswith("other-") for name, _ in held):
                return False
        return True

    assert wait_until(nodes_agree, timeout_s=30, interval_s=0.25)
