"""The SageMaker container contract on a real fleet: /ping follows the nodes' readiness with the
default model (a node stopped with SIGSTOP is not ready), /invocations equals predict for CSV and
JSON bodies, and an XML body is refused with 415."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.ephemeral_fleet import RunningFleet, start_fleet, wait_until
from deploy.example import EXAMPLE_NAME, EXAMPLE_ROW

pytestmark = pytest.mark.fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    running = start_fleet(
        Path(tmp_path_factory.mktemp("sagemaker")), nodes=1, env={"INFERRER_DEFAULT_MODEL": EXAMPLE_NAME}
    )
    yield running
    assert running.stop() == 0, running.log()


def _ping(fleet: RunningFleet) -> int:
    return httpx.get(f"{fleet.url}/ping", timeout=10).status_code


def test_ping_is_503_without_a_ready_node_and_200_once_one_is(fleet: RunningFleet) -> None:
    assert _ping(fleet) == 200
    node = fleet.pid("modelhost-1")
    os.kill(node, signal.SIGSTOP)  # the node answers nothing: not ready
    try:
        assert wait_until(lambda: _ping(fleet) == 503, timeout_s=15, interval_s=0.2)
    finally:
        os.kill(node, signal.SIGCONT)
    assert wait_until(lambda: _ping(fleet) == 200, timeout_s=15, interval_s=0.2)


def test_invocations_equal_predict_for_csv_and_json_and_refuse_xml(fleet: RunningFleet) -> None:
    rows = [EXAMPLE_ROW, [6.7, 3.0, 5.2, 2.3]]
    online = httpx.post(f"{fleet.url}/api/v1/models/{EXAMPLE_NAME}/predict", json={"instances": rows}).json()
    as_json = httpx.post(f"{fleet.url}/invocations", json={"instances": rows})
    assert as_json.status_code == 200 and as_json.json()["predictions"] == online["predictions"]
    csv_body = "".join(",".join(map(str, row)) + "\n" for row in rows)
    as_csv = httpx.post(
        f"{fleet.url}/invocations",
        content=csv_body,
        headers={"content-type": "text/csv", "accept": "text/csv"},
    )
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.text.split() == [str(p) for p in online["predictions"]]
    xml = httpx.post(
        f"{fleet.url}/invocations", content="<rows/>", headers={"content-type": "application/xml"}
    )
    assert xml.status_code == 415
    metrics = httpx.get(f"{fleet.url}/metrics").text
    assert 'route="/invocations"' in metrics  # counted like every route
