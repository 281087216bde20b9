"""Inference graphs on the real fleet (3 nodes behind nginx): a two-step chain equal to the same
Pipeline in-process, a job and a watch through a graph, graph predictions under load with a node
SIGKILLed midway, a 90/10 split between two versions of a model; and two gateway processes
deploying and serving graphs together."""

from __future__ import annotations

import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import skops.io as sio
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from deploy.ephemeral_fleet import RunningFleet, wait_until
from tests.graphs.documents import graph_document
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

X, Y = make_classification(n_samples=600, n_features=4, n_informative=3, n_redundant=0, random_state=3)
ROWS = np.random.default_rng(11).normal(size=(1000, 4)) * 2
# The node goes once 700 graph predictions were sent, of 2,000 at c=32.
TOTAL, AT, CONCURRENCY = 2000, 700, 32


@pytest.fixture(scope="module")
def chain(fleet: RunningFleet) -> Pipeline:
    """`graph-scale` and `graph-logistic` deployed, chained by the graph `scored`."""
    scaler = StandardScaler().fit(X)
    logistic = LogisticRegression().fit(scaler.transform(X), Y)
    for name, model in (("graph-scale", scaler), ("graph-logistic", logistic)):
        assert fleet.deploy(name, sio.dumps(model)).status_code == 201
    spec = graph_document("scored", [
        {"name": "scale", "model": "graph-scale", "output": "transform"},
        {"name": "classify", "model": "graph-logistic", "output": "predict_proba"},
    ])  # fmt: skip
    created = httpx.post(f"{fleet.url}/api/v1/graphs", headers=fleet.auth, json=spec, timeout=30)
    assert created.status_code == 200, created.text
    return Pipeline([("scale", scaler), ("classify", logistic)])


def test_a_chain_equals_the_pipeline_on_a_thousand_rows(fleet: RunningFleet, chain: Pipeline) -> None:
    answer = httpx.post(
        f"{fleet.url}/api/v1/graphs/scored/predict",
        json={"instances": ROWS.tolist(), "trace": True},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # The logistic regression is served by ONNX Runtime (runtime=auto): within its verified tolerance.
    np.testing.assert_allclose(body["predictions"], chain.predict_proba(ROWS), rtol=0, atol=1e-5)
    assert [(t["step"], t["rows"]) for t in body["trace"]] == [("scale", 1000), ("classify", 1000)]
    assert {t["node"] for t in body["trace"]} <= {"modelhost-1", "modelhost-2", "modelhost-3"}


def test_ensembles_and_a_switch_equal_scikit_learn_and_bad_graphs_store_nothing(fleet: RunningFleet) -> None:
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, Y)
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, Y)
    gate = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    for name, model in (("graph-forest", forest), ("graph-tree", tree), ("graph-gate", gate)):
        assert fleet.deploy(name, sio.dumps(model)).status_code == 201
    members = [{"name": "f-{c}", "model": "graph-forest"}, {"name": "t-{c}", "model": "graph-tree"}]
    for combine, voting in (("mean", "soft"), ("vote", "hard")):
        named = [{**m, "name": m["name"].format(c=combine)} for m in members]
        spec = graph_document(
            f"ensemble-{combine}", [{"name": "both", "ensemble": {"combine": combine, "members": named}}]
        )
        assert (
            httpx.post(f"{fleet.url}/api/v1/graphs", headers=fleet.auth, json=spec, timeout=30).status_code
            == 200
        )
        voter = VotingClassifier([("f", forest), ("t", tree)], voting=voting)
        voter.estimators_, voter.le_, voter.classes_ = [forest, tree], LabelEncoder().fit(Y), np.unique(Y)
        answer = httpx.post(
            f"{fleet.url}/api/v1/graphs/ensemble-{combine}/predict", json={"instances": ROWS.tolist()}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == voter.predict(ROWS).tolist(), combine

    switch = graph_document("routed", [
        {"name": "gate", "model": "graph-gate"},
        {"name": "route", "input": "request", "switch": {
            "on": "gate",
            "cases": [{"when": {"column": 0, "equals": 1},
                       "steps": [{"name": "by-forest", "model": "graph-forest"}]}],
            "default": [{"name": "by-tree", "model": "graph-tree"}],
        }},
    ])  # fmt: skip
    assert (
        httpx.post(f"{fleet.url}/api/v1/graphs", headers=fleet.auth, json=switch, timeout=30).status_code
        == 200
    )
    routed = gate.predict(ROWS) == 1
    assert 100 < routed.sum() < 900
    answer = httpx.post(
        f"{fleet.url}/api/v1/graphs/routed/predict", json={"instances": ROWS.tolist()}, timeout=30
    )
    assert answer.json()["predictions"] == np.where(routed, forest.predict(ROWS), tree.predict(ROWS)).tolist()

    bad = graph_document("bad", [
        {"name": "gate", "model": "graph-gate", "output": "transform"},  # a classifier has no transform
        {"name": "missing", "input": "request", "model": "graph-nothing"},  # no such model
        {"name": "gate", "input": "request", "model": "graph-tree"},  # a name used twice
        {"name": "route", "input": "request", "switch": {"on": "gate", "cases": [  # no default
            {"when": {"column": 0, "equals": 1}, "steps": [{"name": "x", "model": "graph-tree"}]}]}},
    ])  # fmt: skip
    for query in ("", "?dry_run=true"):
        refused = httpx.post(f"{fleet.url}/api/v1/graphs{query}", headers=fleet.auth, json=bad, timeout=30)
        assert refused.status_code == 422, refused.text
        paths = {p["path"] for p in refused.json()["problems"]}
        assert {"steps[0].output", "steps[1].model", "steps[2].name", "steps[3].switch.default"} <= paths, (
            paths
        )
    dry = httpx.post(
        f"{fleet.url}/api/v1/graphs?dry_run=true", headers=fleet.auth, json={**switch, "name": "dry"}
    )
    assert dry.status_code == 200 and dry.json()["version"] is None
    ready = dry.json()["stages"][0]["calls"][0]["nodes_ready"]
    assert set(ready) <= {"modelhost-1", "modelhost-2", "modelhost-3"} and ready, dry.text
    listed = httpx.get(f"{fleet.url}/api/v1/graphs", headers=fleet.auth, timeout=10).json()
    assert "bad" not in listed and "dry" not in listed


def test_a_job_and_a_watch_through_a_graph_predict_every_row_once(
    fleet: RunningFleet, chain: Pipeline
) -> None:
    rows = ROWS[:400]
    expected = chain.predict_proba(rows)
    lines = b"".join(orjson.dumps(row) + b"\n" for row in rows.tolist())
    data = fleet.data_dir / "data"
    (data / "graph-in").mkdir(parents=True, exist_ok=True)
    (data / "graph-rows.jsonl").write_bytes(lines)
    body = {
        "graph": "scored",
        "input": "graph-rows.jsonl",
        "output_location": "graph-out",
        "partition_bytes": 8192,
    }
    accepted = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=30)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["partitions"] > 1
    view = fleet.finished_job(accepted.json()["id"])
    assert view["status"] == "succeeded" and (view["graph"], view["graph_version"]) == ("scored", "1"), view
    result = httpx.get(f"{fleet.url}/api/v1/jobs/{view['id']}/result", headers=fleet.auth, timeout=60)
    written = [orjson.loads(line) for line in result.text.splitlines()]
    assert [w["instance"] for w in written] == rows.tolist()  # every row once, in order
    np.testing.assert_allclose([w["prediction"] for w in written], expected, rtol=0, atol=1e-5)

    inline = {"graph": "scored", "instances": rows[:5].tolist()}
    accepted = httpx.post(f"{fleet.url}/api/v1/jobs", json=inline, headers=fleet.auth, timeout=30)
    assert accepted.status_code == 202, accepted.text
    assert fleet.finished_job(accepted.json()["id"])["status"] == "succeeded"
    answer = httpx.get(f"{fleet.url}/api/v1/jobs/{accepted.json()['id']}/result", headers=fleet.auth).json()
    np.testing.assert_allclose(answer["predictions"], expected[:5], rtol=0, atol=1e-5)

    watch = {
        "name": "graph-watch",
        "graph": "scored",
        "input": "graph-in",
        "output_location": "graph-watched",
    }
    created = httpx.post(f"{fleet.url}/api/v1/watches", json=watch, headers=fleet.auth, timeout=30)
    assert created.status_code == 201, created.text
    (data / "graph-in" / "rows.jsonl.tmp").write_bytes(lines)
    (data / "graph-in" / "rows.jsonl.tmp").rename(data / "graph-in" / "rows.jsonl")

    def done() -> dict[str, Any] | None:
        files = httpx.get(f"{fleet.url}/api/v1/watches/graph-watch", headers=fleet.auth, timeout=10).json()[
            "files"
        ]
        return files[0] if files and files[0]["state"] in ("done", "failed") else None

    assert wait_until(lambda: done() is not None, timeout_s=120, interval_s=0.2)
    file = done()
    assert file is not None and file["state"] == "done", file
    assert file["output_location"].endswith("graph-watched/graph=scored/version=1/rows.jsonl")
    output = [orjson.loads(line) for line in (data / file["output_location"]).read_bytes().splitlines()]
    assert [w["instance"] for w in output] == rows.tolist()
    np.testing.assert_allclose([w["prediction"] for w in output], expected, rtol=0, atol=1e-5)
    assert httpx.delete(f"{fleet.url}/api/v1/watches/graph-watch", headers=fleet.auth).status_code == 200


def test_graph_predictions_under_load_lose_none_to_a_killed_node(
    fleet: RunningFleet, chain: Pipeline
) -> None:
    victim = "modelhost-3"
    assert wait_until(lambda: fleet.serves(victim, "graph-logistic"), timeout_s=30, interval_s=0.25)
    pid = fleet.pid(victim)
    url = f"{fleet.url}/api/v1/graphs/scored/predict"
    row = ROWS[:1].tolist()
    with LoadLoop(
        url, {"instances": row}, max_requests=TOTAL, max_seconds=180, concurrency=CONCURRENCY
    ) as load:
        assert wait_until(lambda: load.sent >= AT, timeout_s=90, interval_s=0.01)
        os.kill(pid, signal.SIGKILL)
        assert load.wait(timeout_s=170)
    print(f"{TOTAL} graph predictions, {victim} SIGKILLed after {AT}: {load.report()}")
    assert load.sent == TOTAL and load.failures == [], load.failures[:5]
    expected = chain.predict_proba(np.asarray(row)).tolist()
    assert all(
        a.predictions is not None and np.allclose(a.predictions, expected, atol=1e-5) for a in load.snapshot()
    )
    # The launcher starts the node again: the fleet is left as found.
    assert wait_until(
        lambda: fleet.pid(victim) != pid and fleet.serves(victim, "graph-logistic"),
        timeout_s=60,
        interval_s=0.25,
    )


def test_a_split_of_ninety_to_ten_between_two_versions(fleet: RunningFleet) -> None:
    for estimator in (DecisionTreeClassifier(max_depth=2), DecisionTreeClassifier(max_depth=5)):
        assert fleet.deploy("graph-canary", sio.dumps(estimator.fit(X, Y))).status_code == 201
    spec = graph_document("canary", [{"name": "pick", "split": {"branches": [
        {"name": "stable", "weight": 90, "steps": [{"name": "v1", "model": "graph-canary", "version": "1"}]},
        {"name": "trial", "weight": 10, "steps": [{"name": "v2", "model": "graph-canary", "version": "2"}]},
    ]}}])  # fmt: skip
    created = httpx.post(f"{fleet.url}/api/v1/graphs", headers=fleet.auth, json=spec, timeout=30)
    assert created.status_code == 200, created.text
    taken: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(TOTAL):
            answer = client.post(
                f"{fleet.url}/api/v1/graphs/canary/predict", json={"instances": ROWS[:1].tolist()}
            )
            assert answer.status_code == 200, answer.text
            taken[answer.json()["branches"]["pick"]] += 1
    print(f"{TOTAL} predictions through a 90/10 split: {dict(taken)}")
    assert set(taken) == {"stable", "trial"}
    assert abs(taken["stable"] / TOTAL - 0.9) <= 0.03 and abs(taken["trial"] / TOTAL - 0.1) <= 0.03
    metrics = httpx.get(f"{fleet.url}/metrics", timeout=10).text
    assert (
        f'modelfleet_graph_split_branch_total{{branch="trial",graph="canary",step="pick"}} {taken["trial"]}.0'
        in metrics
    )


def test_two_gateway_processes_number_concurrent_deploys_once_and_serve_each_at_once(
    two_gateways: RunningFleet,
) -> None:
    """Eight deploys of one graph at once, through two gateway processes: eight versions, each once;
    and a graph deployed through one process is served by the other at its first request."""
    fleet = two_gateways
    assert (
        fleet.deploy("graph-two", sio.dumps(DecisionTreeClassifier(max_depth=3).fit(X, Y))).status_code == 201
    )
    spec = graph_document("two", [{"name": "only", "model": "graph-two"}])

    def deploy(_: int) -> str:
        answer = httpx.post(f"{fleet.url}/api/v1/graphs", headers=fleet.auth, json=spec, timeout=60)
        assert answer.status_code == 200, answer.text
        version: str = answer.json()["version"]
        return version

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = sorted(pool.map(deploy, range(8)), key=int)
    assert versions == [str(v) for v in range(1, 9)]
    listed = httpx.get(f"{fleet.url}/api/v1/graphs/two", headers=fleet.auth, timeout=10).json()
    assert [v["version"] for v in listed["versions"]] == versions and listed["active_version"] == "8"
    for n in range(20):  # each request may reach either process: a new graph is served by both
        name = f"fresh-{n}"
        created = httpx.post(f"{fleet.url}/api/v1/graphs", headers=fleet.auth, json={**spec, "name": name})
        assert created.status_code == 200, created.text
        answer = httpx.post(
            f"{fleet.url}/api/v1/graphs/{name}/predict", json={"instances": ROWS[:2].tolist()}
        )
        assert answer.status_code == 200, answer.text
    for name in ["two", *(f"fresh-{n}" for n in range(20))]:
        assert httpx.delete(f"{fleet.url}/api/v1/graphs/{name}", headers=fleet.auth).status_code == 200
    assert httpx.delete(f"{fleet.url}/api/v1/models/graph-two", headers=fleet.auth).status_code == 200
