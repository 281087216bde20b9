"""What operators look at, on the real fleet and its real Prometheus: under load every request is
labelled with its route template (never "unmatched" for a route that exists), p99 per model at the
gateway is one PromQL query, the recording rules are evaluated, and each console page shows the
fleet's nodes and models with values."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from deploy.ephemeral_fleet import RunningFleet, wait_until
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

MODEL = "watched"
ROW = [0.1, -0.2, 0.3, 0.0, 1.0, -1.0]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64", "data": ROW}]}
NODES = ("modelhost-1", "modelhost-2", "modelhost-3")


def query(fleet: RunningFleet, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{fleet.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def scalar(fleet: RunningFleet, expr: str) -> float | None:
    result = query(fleet, expr)
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def loaded(fleet: RunningFleet, pipeline_skops: bytes) -> int:
    """The model deployed and driven through every prediction route at once; the requests sent."""
    answer = fleet.deploy(MODEL, pipeline_skops, version="1")
    assert answer.status_code == 201, answer.text
    # 12 s of load: the series must change across two scrapes (every 5 s) for rate() to see it.
    loads = [
        LoadLoop(f"{fleet.url}{path}", body, 100_000, 12, concurrency, headers)
        for path, body, concurrency, headers in (
            (f"/api/v1/models/{MODEL}/predict", {"instances": [ROW]}, 4, {}),
            (f"/api/v1/models/{MODEL}/versions/1/predict", {"instances": [ROW]}, 2, {}),
            (f"/v2/models/{MODEL}/infer", V2_BODY, 2, {}),
            (f"/v2/models/{MODEL}/versions/1/infer", V2_BODY, 2, {}),
            ("/invocations", {"instances": [ROW]}, 2, {"X-Amzn-SageMaker-Target-Model": MODEL}),
        )
    ]
    for load in loads:
        load.__enter__()
    for load in loads:
        assert load.wait(timeout_s=60), load.report()
        load.__exit__(None, None, None)
        refused = [a for a in load.snapshot() if a.status != 200]  # V2 answers are not REST predictions
        assert refused == [], refused[:3]
        assert load.sent >= 100, load.report()
    sent = sum(load.sent for load in loads)
    counted = f"sum(modelfleet_inferrer_model_request_duration_seconds_count{{model='{MODEL}'}})"
    assert wait_until(lambda: (scalar(fleet, counted) or 0) >= sent, timeout_s=60, interval_s=1), (
        scalar(fleet, counted),
        sent,
    )
    return sent


def test_under_load_no_existing_route_is_unmatched_and_p99_per_model_is_one_query(
    fleet: RunningFleet, loaded: int
) -> None:
    unmatched = query(fleet, "modelfleet_http_requests_total{route='unmatched', status!='404'}")
    assert unmatched == [], unmatched
    routes = {
        s["metric"]["route"]: float(s["value"][1])
        for s in query(fleet, "sum by (route) (modelfleet_http_requests_total{service='inferrer'})")
    }
    for route in (
        "/api/v1/models/{name}/predict",
        "/api/v1/models/{name}/versions/{version}/predict",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/invocations",
    ):
        assert routes.get(route, 0) >= 100, (route, routes)
    p99_per_model = (
        "histogram_quantile(0.99, sum by (model, le) "
        "(rate(modelfleet_inferrer_model_request_duration_seconds_bucket[1m])))"
    )

    def p99() -> dict[str, float]:
        return {s["metric"]["model"]: float(s["value"][1]) for s in query(fleet, p99_per_model)}

    assert wait_until(lambda: 0 < p99().get(MODEL, 0) < 10, timeout_s=30, interval_s=1), p99()
    by_model = p99()
    print(f"\n{loaded} requests; gateway p99 per model: {by_model}")
    assert 0 < by_model[MODEL] < 10


def test_recording_rules_are_evaluated(fleet: RunningFleet, loaded: int) -> None:
    """The rules file is loaded: its per-model series appear at the next evaluation (every 15 s)."""
    recorded = f"modelfleet:model_request_p99_seconds:rate1m{{model='{MODEL}'}}"
    assert wait_until(lambda: scalar(fleet, recorded) is not None, timeout_s=60, interval_s=1)
    groups = httpx.get(f"{fleet.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert {"ModelfleetNodeDown", "ModelfleetNoReadyNode", "ModelfleetHighErrorRatio"} <= alerts
    assert all(rule["health"] == "ok" for group in groups for rule in group["rules"]), groups


def console(fleet: RunningFleet, page: str) -> str:
    answer = httpx.get(f"{fleet.prometheus_url}/consoles/{page}", timeout=30)
    assert answer.status_code == 200, answer.text[:2000]
    return answer.text


def rows(page: str, table: str) -> list[list[str]]:
    """The cells (text only) of each row of the table with this id that holds data (a <td>)."""
    body = re.search(rf'<table[^>]*id="{table}"[^>]*>(.*?)</table>', page, re.S)
    assert body, f"no table {table}"
    found = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S):
        if "<td" in row:
            cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
            found.append([html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in cells])
    return found


def summary(page: str) -> dict[str, str]:
    return {label: value for label, value in rows(page, "summary")}


NUMBER = re.compile(r"^-?[0-9.]+(e-?[0-9]+)?\s?[kMG]?(/s|s|B)?$")


def number(text: str) -> float:
    """A value as Prometheus's humanize writes it ("4.976k", "12/s")."""
    assert NUMBER.match(text), text
    digits = text.rstrip("/sB ")
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(digits[-1], 1.0)
    return float(digits.rstrip("kMG ")) * scale


def test_the_fleet_page_shows_every_node_and_the_model_with_values(fleet: RunningFleet, loaded: int) -> None:
    def page_ready() -> bool:  # the recording rules' first evaluation after the load
        models = {r[0]: r for r in rows(console(fleet, "modelfleet.html"), "models")}
        return MODEL in models and NUMBER.match(models[MODEL][4]) is not None

    assert wait_until(page_ready, timeout_s=60, interval_s=1)
    page = console(fleet, "modelfleet.html")
    nodes = {r[0]: r for r in rows(page, "nodes")}
    assert set(NODES) <= set(nodes), nodes
    linked_instances = {
        unquote(i) for i in re.findall(r'href="/consoles/modelfleet-node.html\?instance=([^"]+)"', page)
    }
    for node in NODES:
        _, address, up, ready, draining, in_flight, loaded_models, rows_per_second = nodes[node]
        assert (up, ready, draining) == ("yes", "1", "0"), nodes[node]
        assert NUMBER.match(in_flight) and NUMBER.match(rows_per_second), nodes[node]
        assert number(loaded_models) >= 1, nodes[node]
        assert address == f"127.0.0.1:{fleet.node_ports[NODES.index(node)]}", nodes[node]
        assert address in linked_instances, (address, linked_instances)
    models = {r[0]: r for r in rows(page, "models")}
    _, versions, per_second, p50, p99, errors = models[MODEL]
    assert versions == "1" and all(NUMBER.match(v) for v in (per_second, p50, p99)), models[MODEL]
    assert errors == "0", models[MODEL]
    assert summary(page)["Nodes up"] == "3 / 3", summary(page)


def test_the_model_page_shows_its_versions_and_the_nodes_that_served_it(
    fleet: RunningFleet, loaded: int
) -> None:
    page = console(fleet, f"modelfleet-model.html?model={MODEL}")
    ((version, runtime, predictions),) = rows(page, "versions")
    assert version == "1" and runtime in ("sklearn", "onnx") and NUMBER.match(predictions), predictions
    served = {r[0] for r in rows(page, "nodes")}
    assert served and served <= set(NODES), served
    assert number(summary(page)["Requests answered"]) >= loaded * 0.99, summary(page)  # 4 digits shown


def test_the_node_page_shows_its_state_and_models(fleet: RunningFleet, loaded: int) -> None:
    page = console(fleet, f"modelfleet-node.html?instance=127.0.0.1:{fleet.node_ports[0]}")
    assert "<h1>Node modelhost-1 " in page
    state = summary(page)
    assert (state["Up"], state["Ready"], state["Draining"]) == ("1", "1", "0"), state
    assert NUMBER.match(state["Resident memory"]), state
    models = {r[0] for r in rows(page, "models")}
    assert MODEL in models, models


def test_the_work_page_shows_jobs_and_bindings(fleet: RunningFleet, loaded: int) -> None:
    page = console(fleet, "modelfleet-work.html")
    statuses = {r[0] for r in rows(page, "jobs")}
    assert {"queued", "running"} <= statuses, statuses
    assert rows(page, "autoscaler"), page


def test_modelfleet_status_prints_every_section_as_a_table(fleet: RunningFleet, loaded: int) -> None:
    result = fleet.cli("status")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for title in ("NODES", "MODELS", "JOBS (NEWEST 10)", "GRAPHS", "WATCHES", "STREAMS", "AUTOSCALER"):
        assert f"\n{title}\n" in f"\n{out}", out
    node_lines = [line.split() for line in out.splitlines() if line.strip().startswith("modelhost-")]
    assert {line[0] for line in node_lines} >= set(NODES), out
    assert all(line[1:3] == ["yes", "yes"] for line in node_lines if line[0] in NODES), out
    assert any(line.split()[:2] == [MODEL, "1"] for line in out.splitlines()), out


def test_modelfleet_up_showed_its_progress(fleet: RunningFleet) -> None:
    """Each child ready is counted as it comes: "[3/8] modelhost-2 ready (pid ...)"."""
    steps = [(int(k), int(n)) for k, n in re.findall(r"\[(\d+)/(\d+)\] \S+ ready \(pid", fleet.log())]
    total = steps[0][1]
    assert steps[:total] == [(k, total) for k in range(1, total + 1)], steps
    assert total >= len(NODES) + 3, steps  # the nodes, the gateway, nginx, Prometheus at least
