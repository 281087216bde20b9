"""The fleet across hosts (testbed/spread_fleet.py): a front balancer, two gateways sharing their
state in PostgreSQL and SeaweedFS on a store host, three nodes, Prometheus on a host of its own, and
every request from a client host. One fleet start for the module; the tests that cut links run last.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from deploy.ephemeral_fleet import wait_until
from testbed.spread_fleet import GATEWAYS, NODES, SpreadFleet, spread_fleet

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
        _deploy(running, "gateway1", "scores", seed=1)  # what every test below predicts with
        yield running


def _deploy(fleet: SpreadFleet, via: str, name: str, seed: int) -> dict:
    path = _model_file(fleet.root, seed)
    status, body = fleet.call(
        "POST", f"{fleet.url(via)}/api/v1/models", None, "-F", f"name={name}", "-F", "runtime=sklearn",
        "-F", f"file=@{path}", timeout_s=120,
    )  # fmt: skip
    assert status == 201, body
    return body


def _predict(fleet: SpreadFleet, via: str, name: str) -> tuple[int, Any]:
    return fleet.call("POST", f"{fleet.url(via)}/api/v1/models/{name}/predict", {"instances": [ROW]})


def test_predictions_through_the_front_reach_every_gateway_and_every_node(fleet: SpreadFleet) -> None:
    out = fleet.root / "spread-load.json"
    argv = [
        "-m", "testbed.client_load", f"{fleet.url('front')}/api/v1/models/scores/predict", str(out),
        "--requests", "600", "--concurrency", "16", "--token", fleet.token, "--vary",
        "--cacert", str(fleet.ca),
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


SERVICE_PORTS = {
    "front": (8000, 9114), "gateway1": (8000, 8080, 9113), "gateway2": (8000, 8080, 9113),
    "node1": (8101,), "node2": (8101,), "node3": (8101,), "monitor": (9090,),
}  # fmt: skip


def test_every_hop_is_tls_and_a_client_without_the_fleet_ca_cannot_connect(fleet: SpreadFleet) -> None:
    """The other tests of this module ran through TLS everywhere (`TLS_DIR` in the .env): client to
    front to gateway, gateway to its nginx to the nodes, nodes to the front for artifacts, Prometheus
    to every target. Here: no service port answers plain HTTP, and none completes a handshake with a
    client that does not trust the fleet's CA."""
    refused = {}
    for host, ports in SERVICE_PORTS.items():
        for port in ports:
            address = f"{fleet.net.address(host)}:{port}"
            plain = fleet.net.curl("client", f"http://{address}/metrics", timeout_s=10)
            untrusted = fleet.net.curl("client", f"https://{address}/metrics", timeout_s=10)
            trusted = fleet.net.curl(
                "client", "--cacert", str(fleet.ca), f"https://{address}/metrics", timeout_s=10
            )
            refused[address] = (plain[0], untrusted[0], trusted[0])
            # A TLS server answers plain HTTP with nothing, or with a 400 that says so (nginx, Go).
            assert plain[0] == 0 or (plain[0] == 400 and "HTTPS" in plain[1].upper()), (address, plain)
            assert untrusted[0] == 0, (address, untrusted)  # certificate not trusted: no HTTP at all
            assert trusted[0] in (200, 401, 404), (address, trusted)  # the handshake completes
    print(f"\n(plain HTTP, https without the CA, https with it) by service port: {refused}")


def _wait_job(fleet: SpreadFleet, via: str, job_id: str, timeout_s: float = 240) -> dict:
    view: dict = {}

    def finished() -> bool:
        nonlocal view
        status, view = fleet.call("GET", f"{fleet.url(via)}/api/v1/jobs/{job_id}")
        return status == 200 and view["status"] not in ("queued", "running")

    assert wait_until(finished, timeout_s, interval_s=0.5), view
    return view


def test_a_watch_shared_by_both_gateways_takes_each_file_once(fleet: SpreadFleet) -> None:
    spec = {"name": "drops", "input": "s3://fleet/drops", "pattern": "*.jsonl", "model": "scores",
            "output_location": "s3://fleet/drops-scored"}  # fmt: skip
    status, body = fleet.call("POST", f"{fleet.url('gateway1')}/api/v1/watches", spec)
    assert status == 201, body
    files = 8
    for i in range(files):
        rows = "".join(json.dumps([i, j / 10, 0.5, 0.25]) + "\n" for j in range(50))
        fleet.put_object(f"s3://fleet/drops/batch-{i}.jsonl", rows.encode())
    view: dict = {}

    def all_done() -> bool:
        nonlocal view
        status, view = fleet.call("GET", f"{fleet.url('gateway2')}/api/v1/watches/drops")
        return status == 200 and view["counts"]["done"] == files

    assert wait_until(all_done, 120, interval_s=0.5), view
    taken = [(f["name"], f["attempts"], f["job"]) for f in view["files"]]
    print(f"\nthe watch took {len(taken)} files: {taken}")
    assert sorted(name for name, _, _ in taken) == sorted(f"batch-{i}.jsonl" for i in range(files))
    assert {attempts for _, attempts, _ in taken} == {1}
    status, jobs = fleet.call("GET", f"{fleet.url('front')}/api/v1/jobs?limit=1000")
    watch_jobs = [j for j in jobs["jobs"] if j["id"] in {job for _, _, job in taken}]
    assert len(watch_jobs) == files and all(j["status"] == "succeeded" for j in watch_jobs)


def test_a_job_submitted_to_one_gateway_completes_through_the_other_when_its_host_is_cut_off(
    fleet: SpreadFleet,
) -> None:
    rows = 400_000
    fleet.put_object(
        "s3://fleet/in/rows.jsonl", "".join(f"[{i}, 0.5, 0.25, 0.125]\n" for i in range(rows)).encode()
    )
    body = {"model": "scores", "input": "s3://fleet/in/rows.jsonl", "output_location": "s3://fleet/out/cut",
            "partition_bytes": 256 * 1024}  # fmt: skip
    status, job = fleet.call("POST", f"{fleet.url('gateway1')}/api/v1/jobs", body)
    assert status == 202, job
    status, seen = fleet.call("GET", f"{fleet.url('gateway2')}/api/v1/jobs/{job['id']}")
    assert status == 200 and seen["id"] == job["id"]  # visible from the other gateway at once

    def under_way() -> bool:
        _, view = fleet.call("GET", f"{fleet.url('gateway2')}/api/v1/jobs/{job['id']}")
        return 2 <= view["partitions"]["done"] < job["partitions"] - 4

    assert wait_until(under_way, 120, interval_s=0.1)
    fleet.net.link("gateway1", up=False)
    try:
        _, at_cut = fleet.call("GET", f"{fleet.url('gateway2')}/api/v1/jobs/{job['id']}")
        view = _wait_job(fleet, "gateway2", job["id"])
    finally:
        fleet.net.link("gateway1", up=True)
    print(f"\ngateway 1 cut off at {at_cut['partitions']} of {job['partitions']}; then {view['partitions']}")
    assert at_cut["status"] == "running"
    assert view["status"] == "succeeded", view
    assert view["rows"]["done"] == rows and view["partitions"]["done"] == job["partitions"]
    result_url = f"{fleet.url('gateway2')}/api/v1/jobs/{job['id']}/result"
    auth = f"Authorization: Bearer {fleet.token}"
    result = fleet.net.curl("client", "--cacert", str(fleet.ca), "-H", auth, result_url, timeout_s=120)
    assert result[0] == 200
    firsts = [json.loads(line)[0] if line.startswith("[") else json.loads(line)["instance"][0]
              for line in result[1].splitlines()]  # fmt: skip
    assert firsts == list(range(rows))  # every row once, in input order
    fleet.net.wait_for(
        "client", f"{fleet.url('gateway1')}/health/ready", 60, "--cacert", str(fleet.ca)
    )  # back once its link is


def _load(fleet: SpreadFleet, out: Path, seconds: float, requests: int = 1_000_000) -> list[str]:
    url = f"{fleet.url('front')}/api/v1/models/scores/predict"
    return [
        sys.executable, "-m", "testbed.client_load", url, str(out), "--requests", str(requests),
        "--max-seconds", str(seconds), "--concurrency", "16", "--vary", "--cacert", str(fleet.ca),
        "--token", fleet.token, "--body", json.dumps({"instances": [ROW]}),
    ]  # fmt: skip


def test_a_node_host_cut_off_under_load_costs_no_request_and_rejoins(fleet: SpreadFleet) -> None:
    """UPSTREAM_TIMEOUT_S is 2 here: a request sent to the node as its link goes down waits that
    long, then nginx sends it to another node; new requests find the node failed after one connect
    timeout (1 s) and skip it. No request fails; none takes longer than a connect timeout, two
    upstream timeouts and its own predict time."""
    out = fleet.root / "cut-node.json"
    load = fleet.net.start("client", _load(fleet, out, seconds=16), str(fleet.root / "cut-node.log"))
    try:
        time.sleep(4)  # the load is under way (the loop is bounded: 16 s)
        fleet.net.link("node3", up=False)
        time.sleep(6)
    finally:
        fleet.net.link("node3", up=True)
    assert load.wait(60) == 0, (fleet.root / "cut-node.log").read_text()
    summary = json.loads(out.read_text())
    bound_s = 1 + 2 * 2 + 2  # connect timeout, two upstream timeouts (UPSTREAM_TIMEOUT_S=2), predict
    print(f"\nnode 3 cut off for 6 s under load (connect timeout 1 s, UPSTREAM_TIMEOUT_S=2, so at most "
          f"{bound_s} s a request): {summary}")  # fmt: skip
    assert set(summary["statuses"]) == {"200"}, summary["failures"]
    assert summary["max"] < bound_s, summary

    def node3_answers() -> bool:
        status, body = _predict_varied(fleet)
        return status == 200 and body["node"] == "modelhost-3"

    assert wait_until(node3_answers, 60, interval_s=0.05)


def _predict_varied(fleet: SpreadFleet) -> tuple[int, Any]:
    row = [time.monotonic() % 1, 0.2, 0.3, 0.4]  # never the same twice: no cache answers it
    return fleet.call("POST", f"{fleet.url('front')}/api/v1/models/scores/predict", {"instances": [row]})


def test_a_node_host_back_with_an_empty_disk_converges_by_itself(fleet: SpreadFleet) -> None:
    fleet.stop_node("node2")
    shutil.rmtree(fleet.cache_dir("node2"))
    started = time.monotonic()
    fleet.start_node("node2")
    fleet.net.wait_for("client", f"{fleet.url('node2')}/health/ready", 120, "--cacert", str(fleet.ca))

    def serves() -> bool:
        status, body = fleet.call("GET", f"{fleet.url('node2')}/")
        return status == 200 and any(m["name"] == "scores" for m in body["models"])

    assert wait_until(serves, 60)
    took = time.monotonic() - started
    print(f"\nnode 2, its cache emptied, was ready with every active model {took:.1f} s after its start")
    assert any(fleet.cache_dir("node2").iterdir())
