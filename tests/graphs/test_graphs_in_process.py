"""Inference graphs through the gateway app, on an in-process fleet (tests/in_process.py): each kind
of step against scikit-learn doing the same work in-process, the checks before anything is stored,
dry runs, versions, pins, traces, failures and metrics."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder

from tests.graphs.documents import ROWS, Y, deploy_all, graph_document, predict_graph
from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


async def test_a_chain_ensembles_and_a_switch_equal_scikit_learn_in_process(
    tmp_path: Path, fitted: dict[str, Any]
) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await deploy_all(fleet, fitted)
        chain = graph_document("chain", [
            {"name": "scale", "model": "scaler", "output": "transform"},
            {"name": "classify", "model": "logistic", "output": "predict_proba"},
        ])  # fmt: skip
        created = await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=chain)
        assert created.status_code == 200, created.text
        assert created.json()["version"] == "1"
        pipeline = Pipeline([("s", fitted["scaler"]), ("c", fitted["logistic"])])
        got = await predict_graph(fleet, "chain", ROWS, trace=True)
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
            spec = graph_document(
                f"ens-{combine}", [{"name": "both", "ensemble": {"combine": combine, "members": members}}]
            )
            assert (await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=spec)).status_code == 200
            estimators = [("f", fitted["forest"]), ("t", fitted["tree"]), ("r", fitted["raw"])]
            voter = VotingClassifier(estimators, voting=voting)
            voter.estimators_, voter.le_, voter.classes_ = (
                [e for _, e in estimators],
                LabelEncoder().fit(Y),
                np.unique(Y),
            )
            got = await predict_graph(fleet, f"ens-{combine}", ROWS)
            assert got["predictions"] == voter.predict(ROWS).tolist(), combine

        switch = graph_document("routed", [
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
        assert (await predict_graph(fleet, "routed", ROWS))["predictions"] == expected.tolist()


async def test_every_problem_at_once_and_nothing_stored(tmp_path: Path, fitted: dict[str, Any]) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await deploy_all(fleet, fitted)
        bad = graph_document("bad", [
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

        good = graph_document("good", [
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
        await deploy_all(fleet, fitted)
        spec = graph_document("canary", [
            {"name": "pick", "split": {"branches": [
                {"name": "stable", "weight": 90, "steps": [{"name": "a", "model": "forest"}]},
                {"name": "trial", "weight": 10,
                 "steps": [{"name": "b", "model": "tree", "follow": "active"}]},
            ]}},
        ])  # fmt: skip
        assert (await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=spec)).status_code == 200
        taken: Counter[str] = Counter()
        for _ in range(400):
            taken[(await predict_graph(fleet, "canary", ROWS[:2]))["branches"]["pick"]] += 1
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

        chain = graph_document("chain", [{"name": "scale", "model": "scaler", "output": "transform"},
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


async def test_records_with_text_columns_through_a_graph_with_an_inference_token(tmp_path: Path) -> None:
    """A DataFrame Pipeline that reads a text column takes `records`, through a graph, as through the
    model itself; with an inference token set, predictions need it and management needs its own."""
    frame = pd.DataFrame({"size": np.arange(60) % 7 * 1.5, "colour": ["red", "green", "blue"] * 20})
    labels = (frame["size"] > 4).astype(int) ^ (frame["colour"] == "blue").astype(int)
    encode = ColumnTransformer([("colour", OneHotEncoder(), ["colour"])], remainder="passthrough")
    pipeline = Pipeline([("encode", encode), ("classify", LogisticRegression())]).fit(frame, labels)
    inference = {"Authorization": "Bearer inference-token-0123456789abcdef"}
    async with in_process_fleet(
        tmp_path, nodes=1, inference_token="inference-token-0123456789abcdef"
    ) as fleet:
        await fleet.deploy("coloured", sio.dumps(pipeline))
        spec = graph_document(
            "coloured-graph", [{"name": "p", "model": "coloured", "output": "predict_proba"}]
        )
        refused = await fleet.gateway.post("/api/v1/graphs", headers=inference, json=spec)
        assert refused.status_code == 403, refused.text
        assert (await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=spec)).status_code == 200
        records = frame.head(9).to_dict("records")
        path = "/api/v1/graphs/coloured-graph/predict"
        assert (await fleet.gateway.post(path, json={"records": records})).status_code == 401
        answer = await fleet.gateway.post(path, headers=inference, json={"records": records})
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(
            answer.json()["predictions"], pipeline.predict_proba(frame.head(9)), atol=1e-12
        )
