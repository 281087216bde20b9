"""No stale answers with two gateway processes and the prediction cache on: a model deleted and
deployed again under the same name (its version numbers start over) is never answered from the
entries of the one before, in either process; every answer is the model its version names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import RunningFleet, start_fleet

pytestmark = pytest.mark.fleet

ROWS = np.random.default_rng(3).normal(size=(8, 4))
# Per phase: requests one after another, each on a new connection, until both processes have
# computed an answer (each computes once, then answers from its own cache), at most 300. A phase
# whose answers both processes already hold sends 60: which process accepts each connection is the
# kernel's choice, and 60 leave both their turn many times over.
MAX_REQUESTS = 300
CACHED_REQUESTS = 60


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("cache")),
        nodes=2,
        extra_args=("--inferrer-workers", "2", "--no-example"),
        env={"INFERRER_PREDICTION_CACHE_SIZE": "1000"},
    )
    yield fleet
    assert fleet.stop() == 0, fleet.log()


def _model(flipped: bool) -> LogisticRegression:
    """Two models that disagree on every row of ROWS."""
    features = np.random.default_rng(1).normal(size=(300, 4))
    labels = (features[:, 0] > 0).astype(int)
    return LogisticRegression().fit(features, 1 - labels if flipped else labels)


def _answers(fleet: RunningFleet, path: str, at_most: int = MAX_REQUESTS) -> list[tuple[str, list[int], str]]:
    """(version, predictions, node or "cache") of identical predictions, until two were computed:
    which process accepts a connection is the kernel's choice, so the test waits for that event."""

    answers: list[tuple[str, list[int], str]] = []
    while len(answers) < at_most and sum(node != "cache" for _, _, node in answers) < 2:
        response = httpx.post(f"{fleet.url}{path}", json={"instances": ROWS.tolist()}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        answers.append((body["version"], body["predictions"], body["node"]))
    return answers


def _check(answers: list[tuple[str, list[int], str]], expected: dict[str, list[int]]) -> Counter[str]:
    for version, predictions, _ in answers:
        assert predictions == expected[version], f"version {version} answered another model's predictions"
    return Counter("cache" if node == "cache" else "node" for _, _, node in answers)


def test_delete_redeploy_and_rollback_never_answer_from_another_model(cached: RunningFleet) -> None:
    original, flipped = _model(False), _model(True)
    a, b = original.predict(ROWS).tolist(), flipped.predict(ROWS).tolist()
    assert all(x != y for x, y in zip(a, b, strict=True))

    assert cached.deploy("c", sio.dumps(original)).json()["version"] == "1"
    first = _check(_answers(cached, "/api/v1/models/c/predict"), {"1": a})
    # Each process computes once and then answers from its own cache: two computed answers mean
    # both processes served, and both hold the entries that could go stale.
    assert first["node"] == 2, first

    assert httpx.delete(f"{cached.url}/api/v1/models/c", headers=cached.auth).status_code == 200
    assert cached.deploy("c", sio.dumps(flipped)).json()["version"] == "1"  # the same number again
    second = _check(_answers(cached, "/api/v1/models/c/predict"), {"1": b})
    assert second["node"] == 2, second  # both processes computed the new model's answer afresh
    _check(_answers(cached, "/api/v1/models/c/versions/1/predict", CACHED_REQUESTS), {"1": b})

    assert cached.deploy("c", sio.dumps(original)).json()["active_version"] == "2"
    third = _check(_answers(cached, "/api/v1/models/c/predict"), {"2": a})
    rolled = httpx.post(f"{cached.url}/api/v1/models/c/rollback", headers=cached.auth)
    assert rolled.json()["active_version"] == "1"
    fourth = _check(_answers(cached, "/api/v1/models/c/predict", CACHED_REQUESTS), {"1": b})
    _check(_answers(cached, "/api/v1/models/c/versions/2/predict", CACHED_REQUESTS), {"2": a})
    print(f"answers by source, phase by phase: {[dict(c) for c in (first, second, third, fourth)]}")
