"""Inference graphs through the gateway app, on an in-process fleet of two nodes (tests/in_process.py):
each kind of step against scikit-learn doing the same work in-process, the checks before anything
is stored, dry runs, versions, pins, traces and failures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from tests.in_process import AUTH, InProcessFleet, in_process_fleet

pytestmark = pytest.mark.anyio
X, Y = make_classification(
    n_samples=1000, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
)
ROWS = np.random.default_rng(7).normal(size=(1000, 4)) * 2


def _graph(name: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "modelfleet/v1", "kind": "InferenceGraph", "name": name, "steps": steps, **extra}


async def _predict(fleet: InProcessFleet, graph: str, rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    answer = await fleet.gateway.post(
        f"/api/v1/graphs/{graph}/predict", headers=AUTH, json={"instances": rows.tolist(), **extra}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    scaler = StandardScaler().fit(X)
    logistic = LogisticRegression(max_iter=500).fit(scaler.transform(X), Y)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, Y)
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, Y)
    gate = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    raw_logistic = LogisticRegression(max_iter=500).fit(X, Y)
    return {
        "scaler": scaler,
        "logistic": logistic,
        "forest": forest,
        "tree": tree,
        "gate": gate,
        "raw": raw_logistic,
    }


async def _deploy_all(fleet: InProcessFleet, fitted: dict[str, Any]) -> None:
    for name, model in fitted.items():
        await fleet.deploy(name, sio.dumps(model), runtime="sklearn")


async def test_a_chain_ensembles_and_a_switch_equal_scikit_learn_in_process(
    tmp_path: Path, fitted: dict[str, Any]
) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await _deploy_all(fleet, fitted)
        chain = _graph("chain", [
            {"name": "scale", "model": "scaler", "output": "transform"},
            {"name": "classify", "model": "logistic", "output": "predict_proba"},
        ])  # fmt: skip
        created = await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=chain)
        assert created.status_code == 200, created.text
        assert created.json()["version"] == "1"
        pipeline = Pipeline([("s", fitted["scaler"]), ("c", fitted["logistic"])])
        got = await _predict(fleet, "chain", ROWS, trace=True)
        np.testing.assert_allclose(got["predictions"], pipeline.predict_proba(ROWS), rtol=0, atol=1e-12)
        assert [t["step"] for t in got["trace"]] == ["scale", "classify"]
        assert all(t["node"] in ("modelhost-1", "modelhost-2") and t["ms"] > 0 for t in got["trace"])
        tensor = {"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": ROWS[:3].ravel().tolist()}
        inferred = await fleet.gateway.post("/v2/models/chain/infer", headers=AUTH, json={"inputs": [tensor]})
        assert inferred.status_code == 200, inferred.text
        (output,) = inferred.json()["outputs"]
        assert output["name"] == "classify" and output["shape"] == [3, 3]
        np.testing.assert_allclose(
            np.reshape(output["data"], (3, 3)), pipeline.predict_proba(ROWS[:3]), atol=1e-12
        )
        named_as_model = await fleet.gateway.post(
            "/api/v1/graphs", headers=AUTH, json={**chain, "name": "tree"}
        )
        assert named_as_model.status_code == 422 and named_as_model.json()["problems"][0]["path"] == "name"

        for combine, voting in (("mean", "soft"), ("vote", "hard")):
            members = [{"name": f"f-{combine}", "model": "forest"}, {"name": f"t-{combine}", "model": "tree"},
                       {"name": f"r-{combine}", "model": "raw"}]  # fmt: skip
            spec = _graph(
                f"ens-{combine}", [{"name": "both", "ensemble": {"combine": combine, "members": members}}]
            )
            assert (await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=spec)).status_code == 200
            estimators = [("f", fitted["forest"]), ("t", fitted["tree"]), ("r", fitted["raw"])]
            voter = VotingClassifier(estimators, voting=voting)
            voter.estimators_, voter.le_, voter.classes_ = (
                [e for _, e in estimators],
                _encoder(),
                np.unique(Y),
            )
            got = await _predict(fleet, f"ens-{combine}", ROWS)
            assert got["predictions"] == voter.predict(ROWS).tolist(), combine

        switch = _graph("routed", [
            {"name": "gate", "model": "gate"},
            {"name": "route", "input": "request", "switch": {
                "on": "gate",
                "cases": [{"when": {"column": 0, "equals": 1},
                           "steps": [{"name": "by-forest", "model": "forest"}]}],
                "default": [{"name": "by-tree", "model": "tree"}],
            }},
        ])  # fmt: skip
        created = await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=switch)
        assert created.status_code == 200, created.text
        routed = fitted["gate"].predict(ROWS) == 1
        expected = np.where(routed, fitted["forest"].predict(ROWS), fitted["tree"].predict(ROWS))
        assert 100 < routed.sum() < 900  # both branches take rows
        assert (await _predict(fleet, "routed", ROWS))["predictions"] == expected.tolist()


def _encoder() -> Any:
    from sklearn.preprocessing import LabelEncoder

    return LabelEncoder().fit(Y)


async def test_every_problem_at_once_and_nothing_stored(tmp_path: Path, fitted: dict[str, Any]) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await _deploy_all(fleet, fitted)
        bad = _graph("bad", [
            {"name": "scale", "model": "scaler", "output": "transform"},
            {"name": "select", "input": "scale", "select": {"columns": [0, 1, 2]}},
            {"name": "classify", "model": "logistic"},  # 3 columns into a model fitted on 4
            {"name": "missing", "input": "scale", "model": "no-such-model"},
            {"name": "classify", "model": "forest", "input": "scale"},  # a name used twice
            {"name": "route", "input": "scale", "switch": {"on": "later", "cases": [
                {"when": {"column": 0, "equals": 1}, "steps": [{"name": "x", "model": "tree"}]}]}},
        ])  # fmt: skip
        answer = await fleet.gateway.post(
            "/api/v1/graphs",
            headers={**AUTH, "content-type": "application/yaml"},
            content=yaml.safe_dump(bad),
        )
        assert answer.status_code == 422, answer.text
        problems = [(p["path"], p["message"]) for p in answer.json()["problems"]]

        def said(path: str, *words: str) -> bool:
            return any(at == path and all(w in message for w in words) for at, message in problems)

        assert said("steps[2].input", "3 columns", "4 features"), problems
        assert said("steps[3].model", "no-such-model"), problems
        assert said("steps[4].name", "twice"), problems
        assert said("steps[5].switch.default", "default"), problems
        assert said("steps[5].switch.on", "no step named 'later'"), problems
        assert (await fleet.gateway.get("/api/v1/graphs", headers=AUTH)).json() == []
        assert (await fleet.gateway.get("/api/v1/graphs/bad", headers=AUTH)).status_code == 404

        good = _graph("good", [
            {"name": "scale", "model": "scaler", "output": "transform"},
            {"name": "classify", "model": "logistic"},
        ])  # fmt: skip
        dry = await fleet.gateway.post("/api/v1/graphs?dry_run=true", headers=AUTH, json=good)
        assert dry.status_code == 200, dry.text
        plan = dry.json()
        assert plan["version"] is None and [s["step"] for s in plan["stages"]] == ["scale", "classify"]
        assert plan["stages"][0]["width"] == 4 and plan["stages"][1]["calls"][0]["version"] == "1"
        assert plan["stages"][1]["calls"][0]["nodes_ready"] == ["modelhost-1"]
        assert (await fleet.gateway.get("/api/v1/graphs", headers=AUTH)).json() == []


async def test_pins_versions_deletes_and_failures(tmp_path: Path, fitted: dict[str, Any]) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await _deploy_all(fleet, fitted)
        spec = _graph("canary", [
            {"name": "pick", "split": {"branches": [
                {"name": "stable", "weight": 90, "steps": [{"name": "a", "model": "forest"}]},
                {"name": "trial", "weight": 10,
                 "steps": [{"name": "b", "model": "tree", "follow": "active"}]},
            ]}},
        ])  # fmt: skip
        assert (await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=spec)).status_code == 200
        taken: Counter[str] = Counter()
        for _ in range(400):
            taken[(await _predict(fleet, "canary", ROWS[:2]))["branches"]["pick"]] += 1
        assert set(taken) == {"stable", "trial"} and 0.83 <= taken["stable"] / 400 <= 0.97, taken

        refused = await fleet.gateway.delete("/api/v1/models/forest", headers=AUTH)
        assert refused.status_code == 409 and "graph canary" in refused.json()["error"], refused.text
        # A new forest version does not change the graph (pinned); it is stored, not served by it.
        await fleet.deploy("forest", sio.dumps(fitted["tree"]), runtime="sklearn")
        view = (await fleet.gateway.get("/api/v1/graphs/canary", headers=AUTH)).json()
        assert view["versions"][0]["pins"] == {"a": "1"}
        # The graph's second version pins forest 2; the first can be activated again.
        again = await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=spec)
        assert again.json()["version"] == "2"
        back = await fleet.gateway.post("/api/v1/graphs/canary/versions/1/activate", headers=AUTH)
        assert back.status_code == 200 and back.json()["version"] == "1"

        metrics = (await fleet.gateway.get("/metrics")).text
        assert 'modelfleet_graph_requests_total{graph="canary",outcome="ok"} 400.0' in metrics
        assert 'modelfleet_graph_overhead_seconds_count{graph="canary"} 400.0' in metrics
        assert 'modelfleet_graph_step_duration_seconds_count{graph="canary",step="pick"} 400.0' in metrics
        deleted = await fleet.gateway.delete("/api/v1/graphs/canary", headers=AUTH)
        assert deleted.json()["deleted_versions"] == ["1", "2"]
        assert 'graph="canary"' not in (await fleet.gateway.get("/metrics")).text  # its series went with it
        assert (await fleet.gateway.delete("/api/v1/models/forest", headers=AUTH)).status_code == 200

        chain = _graph("chain", [{"name": "scale", "model": "scaler", "output": "transform"},
                                 {"name": "classify", "model": "logistic"}])  # fmt: skip
        assert (await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=chain)).status_code == 200
        wrong = await fleet.gateway.post(
            "/api/v1/graphs/chain/predict", headers=AUTH, json={"instances": [[1, 2]]}
        )
        assert wrong.status_code == 422 and "4 features" in wrong.text
        nan = await fleet.gateway.post(
            "/api/v1/graphs/chain/predict", headers=AUTH, json={"instances": [[None, 1, 2, 3]]}
        )
        assert nan.status_code == 422, nan.text
        # The scaler passes a missing value through; the logistic regression refuses it.
        assert nan.json()["step"] == "classify" and nan.json()["model"] == "logistic"
        assert "graph 'chain' step 'classify'" in nan.json()["error"]
        metrics = (await fleet.gateway.get("/metrics")).text
        assert 'modelfleet_graph_step_errors_total{graph="chain",step="classify"} 1.0' in metrics
        assert 'modelfleet_graph_requests_total{graph="chain",outcome="error"} 1.0' in metrics
        assert 'modelfleet_graph_step_duration_seconds_count{graph="chain",step="scale"} 1.0' in metrics


async def test_what_a_careless_document_does_is_refused_or_answered_never_a_server_error(
    tmp_path: Path, fitted: dict[str, Any]
) -> None:
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    named = LogisticRegression(max_iter=500).fit(frame, Y)
    reordered = LogisticRegression(max_iter=500).fit(frame[["d", "c", "b", "a"]], Y)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await _deploy_all(fleet, fitted)
        for name, model in (("named", named), ("reordered", reordered)):
            await fleet.deploy(name, sio.dumps(model), runtime="sklearn")

        async def post(document: dict[str, Any]) -> Any:
            return await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=document)

        # Two columns selected, then a model: a view of the rows, sent whole.
        picked = _graph("picked", [
            {"name": "scale", "model": "scaler", "output": "transform"},
            {"name": "two", "select": {"columns": [2, 3]}},
            {"name": "first", "input": "scale", "select": {"columns": ["x0", "x1"]}},
            {"name": "again", "input": ["two", "first"], "model": "raw"},
        ])  # fmt: skip
        answer = await post(picked)
        assert answer.status_code == 200, answer.text
        scaled = fitted["scaler"].transform(ROWS[:5])[:, [2, 3, 0, 1]]
        got = await _predict(fleet, "picked", ROWS[:5])
        assert got["predictions"] == fitted["raw"].predict(scaled).tolist()
        # A column past a width known only once answered: the step fails, 422, naming itself.
        blind = _graph("blind", [{"name": "cols", "select": {"columns": [7]}}])
        assert (await post(blind)).status_code == 200
        answer = await fleet.gateway.post(
            "/api/v1/graphs/blind/predict", headers=AUTH, json={"instances": [[1, 2]]}
        )
        assert answer.status_code == 422 and answer.json()["step"] == "cols", answer.text

        refused = {
            "long name": {**picked, "name": "g" * 41},
            "weights": _graph("w", [{"name": "e", "ensemble": {
                "combine": "weighted", "weights": [1e308, 1e308],
                "members": [{"name": "m1", "model": "tree"}, {"name": "m2", "model": "forest"}]}}]),
            "feature order": _graph("f", [
                {"name": "one", "model": "named"},
                {"name": "other", "input": "request", "model": "reordered"},
                {"name": "both", "input": ["one", "other"], "select": {"columns": [0]}},
            ]),
            "named as a model": {**picked, "name": "tree"},
        }  # fmt: skip
        for why, document in refused.items():
            answer = await post(document)
            assert answer.status_code == 422, (why, answer.text)
        listed = (await fleet.gateway.get("/api/v1/graphs", headers=AUTH)).json()
        assert sorted(listed) == ["blind", "picked"]

        # A model cannot take a graph's name; a deleted graph's versions are gone at once.
        taken = await fleet.gateway.post(
            "/api/v1/models",
            headers=AUTH,
            data={"name": "picked"},
            files={"file": ("m.skops", sio.dumps(fitted["tree"]))},
        )
        assert taken.status_code == 409, taken.text
        pinned = "/api/v1/graphs/picked/versions/1/predict"
        assert (
            await fleet.gateway.post(pinned, headers=AUTH, json={"instances": ROWS[:1].tolist()})
        ).status_code == 200
        assert (await fleet.gateway.delete("/api/v1/graphs/picked", headers=AUTH)).status_code == 200
        assert (
            await fleet.gateway.post(pinned, headers=AUTH, json={"instances": ROWS[:1].tolist()})
        ).status_code == 404

        # A version that no longer checks is not activated: the active one stays.
        scale = {"name": "s", "model": "scaler", "output": "transform"}
        follows = _graph("moving", [scale, {"name": "m", "model": "named", "follow": "active"}])
        pinned_one = _graph("moving", [scale, {"name": "m", "model": "named", "version": "1"}])
        assert (await post(follows)).status_code == 200 and (await post(pinned_one)).status_code == 200
        await fleet.deploy("named", sio.dumps(DecisionTreeClassifier().fit(X[:, :3], Y)), runtime="sklearn")
        back = await fleet.gateway.post("/api/v1/graphs/moving/versions/1/activate", headers=AUTH)
        assert back.status_code == 409 and "fitted on 3 features" in back.text, back.text
        view = (await fleet.gateway.get("/api/v1/graphs/moving", headers=AUTH)).json()
        assert view["active_version"] == "2"
        assert len((await _predict(fleet, "moving", ROWS[:3]))["predictions"]) == 3
