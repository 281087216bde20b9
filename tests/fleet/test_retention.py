"""Bounded storage on a real fleet: 30 versions deployed (five at a time, two gateway processes) with
INFERRER_KEEP_VERSIONS=3 leave 3 versions in the repository, and on each node's disk only the
artifacts of versions still stored; predictions of another model meanwhile all succeed."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import RunningFleet, wait_until
from deploy.example import EXAMPLE_ROW
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

VERSIONS = 30
KEEP = 3  # the two_gateways fleet's INFERRER_KEEP_VERSIONS
NODES = ("modelhost-1", "modelhost-2")


@pytest.fixture(scope="module")
def fleet(two_gateways: RunningFleet) -> RunningFleet:
    """Two gateway processes, two nodes, INFERRER_KEEP_VERSIONS=3 (tests/fleet/conftest.py)."""
    return two_gateways


def _artifact(seed: int) -> bytes:
    """A model of its own (its own sha256) for every version."""
    features = np.random.default_rng(seed).normal(size=(60, 4))
    return sio.dumps(LogisticRegression().fit(features, (features[:, seed % 4] > 0).astype(int)))


def _served(version: dict[str, Any]) -> str:
    """The artifact nodes load for a version: its verified ONNX graph, or the upload itself."""
    return str(version["served_sha256"])


def _cached(fleet: RunningFleet, node: str) -> set[str]:
    return {p.name for p in (fleet.data_dir / "cache" / node).iterdir() if not p.name.startswith(".")}


def test_thirty_versions_with_retention_three_leave_three_and_caches_hold_only_those(
    fleet: RunningFleet,
) -> None:
    artifacts = [_artifact(seed) for seed in range(VERSIONS)]
    url = f"{fleet.url}/api/v1/models/iris/predict"
    with (
        LoadLoop(
            url, {"instances": [EXAMPLE_ROW]}, max_requests=50_000, max_seconds=300, concurrency=4
        ) as load,
        concurrent.futures.ThreadPoolExecutor(5) as pool,
    ):
        answers = list(pool.map(lambda data: fleet.deploy("churn", data, timeout_s=120), artifacts))
    assert load.failures == [], load.failures[:5]
    assert [a.status_code for a in answers] == [201] * VERSIONS, [
        a.text for a in answers if a.status_code != 201
    ]
    assert sorted(int(a.json()["version"]) for a in answers) == list(range(1, VERSIONS + 1))

    auth = fleet.auth
    view = httpx.get(f"{fleet.url}/api/v1/models/churn", headers=auth, timeout=10).json()
    kept = {v["version"]: v["sha256"] for v in view["versions"]}
    assert len(kept) == KEEP, kept
    assert view["active_version"] in kept
    on_disk = {p.name for p in (fleet.data_dir / "repository" / "models" / "churn").iterdir() if p.is_dir()}
    assert on_disk == set(kept)
    # The fleet is shared: what every model still stores, this one's 3 versions among them.
    listed = httpx.get(f"{fleet.url}/api/v1/models", headers=auth, timeout=10).json()["models"]
    needed = {_served(v) for model in listed for v in model["versions"]}
    assert {_served(v) for v in view["versions"]} <= needed

    def caches_hold_only_what_is_needed() -> bool:
        return all(_cached(fleet, node) <= needed for node in NODES)

    assert wait_until(caches_hold_only_what_is_needed, timeout_s=15, interval_s=0.25), {
        node: _cached(fleet, node) - needed for node in NODES
    }
    (active,) = [v for v in view["versions"] if v["version"] == view["active_version"]]
    active_sha = _served(active)
    assert all(active_sha in _cached(fleet, node) for node in NODES)  # what a restart loads first

    retired = min(set(map(str, range(1, VERSIONS + 1))) - set(kept), key=int)
    gone = httpx.post(
        f"{fleet.url}/api/v1/models/churn/versions/{retired}/predict",
        json={"instances": [EXAMPLE_ROW]},
        timeout=10,
    )
    assert gone.status_code == 404, gone.text
    served = httpx.post(
        f"{fleet.url}/api/v1/models/churn/predict", json={"instances": [EXAMPLE_ROW]}, timeout=10
    )
    assert served.status_code == 200 and served.json()["version"] == view["active_version"], served.text
