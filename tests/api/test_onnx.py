"""ONNX graphs deployed and served in-process like any model: instances, records by input name, CSV;
a graph that is not valid, keeps tensors outside its bytes or uses custom operators is refused with
a 422 and nothing is stored (tests/in_process.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline

from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio

FEATURES = np.random.default_rng(4).normal(size=(300, 4)).astype(np.float32)
LABELS = (FEATURES[:, 0] + FEATURES[:, 2] > 0).astype(int)


def _forest() -> tuple[RandomForestClassifier, bytes]:
    forest = RandomForestClassifier(20, max_depth=6, random_state=0).fit(FEATURES, LABELS)
    return forest, to_onnx(forest, FEATURES[:1]).SerializeToString()


async def test_an_onnx_forest_answers_as_the_estimator_it_came_from(tmp_path: Path) -> None:
    forest, graph = _forest()
    rows = FEATURES[:40].astype(np.float64)
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        deployed = await fleet.deploy("forest", graph, filename="forest.onnx")
        assert deployed["nodes_loaded"] == ["modelhost-1", "modelhost-2"], deployed
        view = (await fleet.gateway.get("/api/v1/models/forest", headers=AUTH)).json()
        (version,) = view["versions"]
        assert version["format"] == "onnx" and version["signature"]["classes"] == [0, 1], version
        predicted = await fleet.gateway.post(
            "/api/v1/models/forest/predict", headers=AUTH, json={"instances": rows.tolist()}
        )
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["predictions"] == forest.predict(rows).tolist()
        probabilities = await fleet.gateway.post(
            "/api/v1/models/forest/predict",
            headers=AUTH,
            json={"instances": rows.tolist(), "output": "predict_proba"},
        )
        answered = np.array(probabilities.json()["predictions"])
        assert np.abs(answered - forest.predict_proba(rows)).max() < 1e-5
        csv = "\n".join(",".join(str(v) for v in row) for row in rows[:3].tolist()) + "\n"
        as_csv = await fleet.gateway.post(
            "/api/v1/models/forest/predict", headers={**AUTH, "content-type": "text/csv"}, content=csv
        )
        assert as_csv.status_code == 200, as_csv.text
        assert as_csv.json()["predictions"] == forest.predict(rows[:3]).tolist()
        wrong = await fleet.gateway.post(
            "/api/v1/models/forest/predict", headers=AUTH, json={"instances": [[1.0, 2.0]]}
        )
        assert wrong.status_code == 422 and "expected 4 features" in wrong.text, wrong.text


async def test_a_graph_of_one_input_per_column_takes_records_by_input_name(
    tmp_path: Path, text_column_pipeline: Pipeline, text_column_rows: pd.DataFrame
) -> None:
    """skl2onnx converts a pipeline with a one-hot text column into one input per column: the
    inputs' names are the features, so records (keys in any order), a CSV file job's columns and
    text reach the graph; V2 metadata gives the graph's inputs."""
    numeric = {"age": np.float32, "income": np.float32}
    graph = to_onnx(text_column_pipeline, text_column_rows[:1].astype(numeric)).SerializeToString()
    records = text_column_rows.to_dict(orient="records")
    shuffled = [{k: r[k] for k in ("city", "income", "age")} for r in records]
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("people", graph, filename="people.onnx")
        predicted = await fleet.gateway.post(
            "/api/v1/models/people/predict", headers=AUTH, json={"records": shuffled}
        )
        metadata = (await fleet.gateway.get("/v2/models/people")).json()
        many = pd.concat([text_column_rows] * 40, ignore_index=True)
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / "people.csv").write_bytes(many.to_csv(index=False).encode())
        body = {"model": "people", "input": "people.csv", "partition_bytes": 4096}
        submitted = await fleet.gateway.post("/api/v1/jobs", json=body, headers=AUTH)
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        view = await fleet.finished_job(job["id"])
        result = await fleet.gateway.get(f"/api/v1/jobs/{job['id']}/result", headers=AUTH)
    expected = text_column_pipeline.predict(text_column_rows).tolist()
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == expected
    # V2 metadata: the graph's own inputs, names, datatypes and shapes.
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "age", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "income", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1, 1]},
    ]
    # A file job over several partitions, each predicted by the graph.
    assert view["status"] == "succeeded" and job["partitions"] > 1, (job, view)
    answered = pd.read_csv(io.BytesIO(result.content))["prediction"].tolist()  # CSV in, CSV out
    assert answered == text_column_pipeline.predict(many).tolist()


async def test_a_regression_graph_predicts_numbers_and_offers_no_probabilities(tmp_path: Path) -> None:
    regression = LinearRegression().fit(FEATURES, FEATURES[:, 1] * 2 + 1)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        deployed = await fleet.deploy("line", to_onnx(regression, FEATURES[:1]).SerializeToString(), "l.onnx")
        assert deployed["activated"], deployed
        rows = FEATURES[:5].tolist()
        predicted = await fleet.gateway.post(
            "/api/v1/models/line/predict", headers=AUTH, json={"instances": rows}
        )
        assert np.allclose(predicted.json()["predictions"], regression.predict(FEATURES[:5]), atol=1e-4)
        refused = await fleet.gateway.post(
            "/api/v1/models/line/predict", headers=AUTH, json={"instances": rows, "output": "predict_proba"}
        )
        assert refused.status_code == 422, refused.text


def _graph(domain: str, op: str) -> bytes:
    """One node of `op` from `domain` over a [rows, 4] float input."""
    node = helper.make_node(op, ["X"], ["Y"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _with_external_tensor() -> bytes:
    """A graph whose weight is said to live in a file beside it."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 1], np.ones(4, dtype=np.float32).tolist())
    weight.data_location = TensorProto.EXTERNAL
    del weight.float_data[:]
    weight.external_data.add(key="location", value="../../etc/passwd")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
        initializer=[weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _one_node_graph(op: str, inputs: list[str], output_shape: list[Any], **attributes: Any) -> bytes:
    """X, a [rows, 4] float input, through `op` (with the constants it takes) to Y."""
    constants = [
        helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [v]))
        for name, v in (("zero", 0.0), ("one", 1.0))
        if name in inputs
    ]
    graph = helper.make_graph(
        [*constants, helper.make_node(op, inputs, ["Y"], **attributes)],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, output_shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


@pytest.mark.parametrize(
    ("graph", "trusted_types", "message"),
    [
        (b"not a graph at all", "", "not a valid ONNX graph"),
        (_graph("com.example.custom", "Scramble"), "", "custom operators are refused"),
        (_graph("com.example.custom", "Scramble"), "com.example.custom", "ONNX Runtime cannot run"),
        (_with_external_tensor(), "", "external files"),
        (
            onnx.helper.make_model(
                helper.make_graph(
                    [helper.make_node("Relu", ["X"], ["Y"])],
                    "g",
                    [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None])],
                    [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, None])],
                ),
                opset_imports=[helper.make_opsetid("", 17)],
            ).SerializeToString(),
            "",
            "fixed number of features",
        ),
        # A sum over everything: one value for the whole request, not one per row.
        (_one_node_graph("ReduceSum", ["X"], [], keepdims=0), "", "one value or row per input row"),
        # A tensor as long as a value of the request says: the request would size the node's work.
        (_one_node_graph("Range", ["zero", "X", "one"], [None]), "", "Range: operators whose work"),
    ],
    ids=[
        "garbage",
        "custom-domain",
        "listed-but-unknown-op",
        "external-data",
        "undeclared-width",
        "one-value-per-request",
        "input-sized",
    ],
)
async def test_a_graph_that_cannot_be_served_is_refused_and_nothing_is_stored(
    tmp_path: Path, graph: bytes, trusted_types: str, message: str
) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        refused = await fleet.gateway.post(
            "/api/v1/models",
            headers=AUTH,
            data={"name": "bad", **({"trusted_types": trusted_types} if trusted_types else {})},
            files={"file": ("bad.onnx", graph)},
        )
        assert refused.status_code == 422, refused.text
        assert message in refused.json()["error"], refused.text
        assert (await fleet.gateway.get("/api/v1/models", headers=AUTH)).json()["models"] == []
    assert not list((tmp_path / "repository" / "staging").iterdir())


async def test_a_listed_operator_domain_is_served(tmp_path: Path) -> None:
    """com.microsoft's operators ship with ONNX Runtime: listed, a graph using one is taken."""
    graph = _graph("com.microsoft", "Gelu")
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("gelu", graph, filename="gelu.onnx", trusted_types="com.microsoft")
        predicted = await fleet.gateway.post(
            "/api/v1/models/gelu/predict", headers=AUTH, json={"instances": [[0.0, 1.0, -1.0, 2.0]]}
        )
    assert predicted.status_code == 200, predicted.text
    assert np.allclose(predicted.json()["predictions"], [[0.0, 0.8413, -0.1587, 1.9545]], atol=1e-3)


async def test_an_integer_input_takes_whole_numbers_only(tmp_path: Path) -> None:
    """1.7 or null would be cut to 1 or to int64's minimum with a 200: a 422 instead."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["X"], ["Y"], to=TensorProto.FLOAT)],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.INT64, [None, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 2])],
    )
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("ints", data, filename="ints.onnx")
        url = "/api/v1/models/ints/predict"
        whole = await fleet.gateway.post(url, headers=AUTH, json={"instances": [[3, -4]]})
        assert whole.status_code == 200 and whole.json()["predictions"] == [[3.0, -4.0]], whole.text
        for row in ([1.7, 1], [None, 1], [1e30, 1]):
            refused = await fleet.gateway.post(url, headers=AUTH, json={"instances": [row]})
            assert refused.status_code == 422 and "whole numbers" in refused.text, (row, refused.text)
