"""The fleet across hosts (tests/multihost/spread.py): a front balancer, two gateways sharing their
state in PostgreSQL and SeaweedFS on a store host, three nodes, Prometheus on a host of its own, and
every request from a client host. One fleet start for the module; the tests that cut links run last.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import wait_until
from tests.multihost.spread import GATEWAYS, NODES, SpreadFleet, spread_fleet

pytestmark = pytest.mark.fleet
ROW = [0.1, 0.2, 0.3, 0.4]


def _model_file(root: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path = root / f"model-{seed}.skops"
    path.write_bytes(sio.dumps(LogisticRegression().fit(rng.random((60, 4)), np.arange(60) % 2)))
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpreadFleet]:
    with spread_fleet(tmp_path_factory.mktemp("spread")) as running:
        yield running


def _deploy(fleet: SpreadFleet, via: str, name: str, seed: int) -> dict:
    path = _model_file(fleet.root, seed)
    status, body = fleet.call(
        "POST", f"{fleet.url(via)}/api/v1/models", None, "-F", f"name={name}", "-F", "runtime=sklearn",
        "-F", f"file=@{path}", timeout_s=120,
    )  # fmt: skip
    assert status == 201, body
    return body


def _predict(fleet: SpreadFleet, via: str, name: str) -> tuple[int, dict | str]:
    return fleet.call("POST", f"{fleet.url(via)}/api/v1/models/{name}/predict", {"instances": [ROW]})


def test_predictions_through_the_front_reach_every_gateway_and_every_node(fleet: SpreadFleet) -> None:
    _deploy(fleet, "gateway1", "scores", seed=1)
    out = fleet.root / "spread-load.json"
    argv = [
        "-m", "tests.multihost.client_load", f"{fleet.url('front')}/api/v1/models/scores/predict", str(out),
        "--requests", "600", "--concurrency", "16", "--token", fleet.token, "--vary",
        "--body", json.dumps({"instances": [ROW]}),
    ]  # fmt: skip
    done = fleet.net.run("client", [sys.executable, *argv], timeout_s=180)
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    print(f"\nthrough the front: {summary}")
    assert summary["statuses"] == {"200": 600}
    assert set(summary["gateways"]) == {"gateway-1", "gateway-2"}
    assert set(summary["nodes"]) == {"modelhost-1", "modelhost-2", "modelhost-3"}


def test_a_model_deployed_through_one_gateway_is_served_by_the_other_and_deleted_everywhere(
    fleet: SpreadFleet,
) -> None:
    deployed = _deploy(fleet, "gateway1", "shared", seed=2)
    status, body = _predict(fleet, "gateway2", "shared")  # at once: the deploy answered after B read it
    assert status == 200 and body["version"] == deployed["version"], body
    for _ in range(20):  # into both gateways' prediction caches
        for gateway in GATEWAYS:
            assert _predict(fleet, gateway, "shared")[0] == 200

    status, body = fleet.call("DELETE", f"{fleet.url('gateway2')}/api/v1/models/shared")
    assert status == 200, body
    answers = [_predict(fleet, gateway, "shared") for _ in range(20) for gateway in (*GATEWAYS, "front")]
    served = [a for a in answers if a[0] == 200]
    print(f"\nafter the delete: {len(answers)} calls, {len(served)} answered from the deleted version")
    assert served == [] and {a[0] for a in answers} == {404}
    for host in NODES:
        status, body = fleet.call("GET", f"{fleet.url(host)}/")
        assert status == 200 and all(m["name"] != "shared" for m in body["models"]), body


def test_prometheus_on_its_own_host_scrapes_every_service_on_every_host(fleet: SpreadFleet) -> None:
    def targets() -> list[dict]:
        status, body = fleet.call("GET", f"{fleet.url('monitor')}/api/v1/targets")
        return body["data"]["activeTargets"] if status == 200 else []

    expected = 2 + 3 + 3  # two gateways, three nodes, the exporters of the gateways' nginx and the front's
    healthy = wait_until(
        lambda: len(targets()) == expected and all(t["health"] == "up" for t in targets()), 60
    )
    assert healthy, [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets()]
    by_job: dict[str, list[str]] = {}
    for target in targets():
        by_job.setdefault(target["labels"]["job"], []).append(target["labels"]["instance"])
    print(f"\nPrometheus on {fleet.net.address('monitor')} scrapes: {by_job}")
    assert sorted(len(v) for v in by_job.values()) == [2, 3, 3]
