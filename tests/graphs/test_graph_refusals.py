"""A careless or hostile graph document, on an in-process fleet: refused whole (422) or answered,
never a server error, and nothing half-changed: a select's columns, a column known only at run
time, long names, overflowing weights, request readers that disagree, names shared with models,
deleted versions, a version that no longer checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from tests.graphs.documents import ROWS, X, Y, deploy_all, graph_document, predict_graph
from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


async def test_what_a_careless_document_does_is_refused_or_answered_never_a_server_error(
    tmp_path: Path, fitted: dict[str, Any]
) -> None:
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    named = LogisticRegression(max_iter=500).fit(frame, Y)
    reordered = LogisticRegression(max_iter=500).fit(frame[["d", "c", "b", "a"]], Y)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await deploy_all(fleet, fitted)
        for name, model in (("named", named), ("reordered", reordered)):
            await fleet.deploy(name, sio.dumps(model), runtime="sklearn")

        async def post(document: dict[str, Any]) -> Any:
            return await fleet.gateway.post("/api/v1/graphs", headers=AUTH, json=document)

        # Two columns selected, then a model: a view of the rows, sent whole.
        picked = graph_document("picked", [
            {"name": "scale", "model": "scaler", "output": "transform"},
            {"name": "two", "select": {"columns": [2, 3]}},
            {"name": "first", "input": "scale", "select": {"columns": ["x0", "x1"]}},
            {"name": "again", "input": ["two", "first"], "model": "raw"},
        ])  # fmt: skip
        answer = await post(picked)
        assert answer.status_code == 200, answer.text
        scaled = fitted["scaler"].transform(ROWS[:5])[:, [2, 3, 0, 1]]
        got = await predict_graph(fleet, "picked", ROWS[:5])
        assert got["predictions"] == fitted["raw"].predict(scaled).tolist()
        # A column past a width known only once answered: the step fails, 422, naming itself.
        blind = graph_document("blind", [{"name": "cols", "select": {"columns": [7]}}])
        assert (await post(blind)).status_code == 200
        answer = await fleet.gateway.post(
            "/api/v1/graphs/blind/predict", headers=AUTH, json={"instances": [[1, 2]]}
        )
        assert answer.status_code == 422 and answer.json()["step"] == "cols", answer.text

        refused = {
            "long name": {**picked, "name": "g" * 41},
            "weights": graph_document("w", [{"name": "e", "ensemble": {
                "combine": "weighted", "weights": [1e308, 1e308],
                "members": [{"name": "m1", "model": "tree"}, {"name": "m2", "model": "forest"}]}}]),
            "feature order": graph_document("f", [
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
        follows = graph_document("moving", [scale, {"name": "m", "model": "named", "follow": "active"}])
        pinned_one = graph_document("moving", [scale, {"name": "m", "model": "named", "version": "1"}])
        assert (await post(follows)).status_code == 200 and (await post(pinned_one)).status_code == 200
        await fleet.deploy("named", sio.dumps(DecisionTreeClassifier().fit(X[:, :3], Y)), runtime="sklearn")
        back = await fleet.gateway.post("/api/v1/graphs/moving/versions/1/activate", headers=AUTH)
        assert back.status_code == 409 and "fitted on 3 features" in back.text, back.text
        view = (await fleet.gateway.get("/api/v1/graphs/moving", headers=AUTH)).json()
        assert view["active_version"] == "2"
        assert len((await predict_graph(fleet, "moving", ROWS[:3]))["predictions"]) == 3
