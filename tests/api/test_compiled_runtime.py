"""scikit-learn uploads compiled to ONNX (runtime=auto, the default) answer as scikit-learn does:
labels equal and probabilities within 1e-5 on 10,000 rows, for a forest, gradient boosting, a
scaler pipeline and a one-hot pipeline. A conversion that answers differently (a tampered graph)
stays on scikit-learn under auto and is refused under runtime=onnx, with nothing stored. The
runtime shows in the model's view and in the gateway's metrics (in-process fleet:
tests/in_process.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from artifacts.onnx_conversion import choose_runtime
from tests.in_process import AUTH, InProcessFleet, in_process_fleet

pytestmark = pytest.mark.anyio

ROWS = 10_000
_rng = np.random.default_rng(11)
FEATURES = _rng.normal(size=(2_000, 6))
LABELS = (FEATURES[:, 0] + FEATURES[:, 1] * FEATURES[:, 2] > 0).astype(int)
# Two columns of category codes (0-3) for the one-hot pipeline, beside four numbers.
CODED = np.column_stack([FEATURES[:, :4], _rng.integers(0, 4, (2_000, 2))])


def _models() -> dict[str, tuple[Any, np.ndarray]]:
    one_hot = ColumnTransformer([("codes", OneHotEncoder(), [4, 5])], remainder="passthrough")
    return {
        "forest": (RandomForestClassifier(40, max_depth=8, random_state=0).fit(FEATURES, LABELS), FEATURES),
        "boosting": (
            GradientBoostingClassifier(n_estimators=40, random_state=0).fit(FEATURES, LABELS),
            FEATURES,
        ),
        "scaled": (make_pipeline(StandardScaler(), LogisticRegression()).fit(FEATURES, LABELS), FEATURES),
        "one-hot": (make_pipeline(one_hot, LogisticRegression()).fit(CODED, LABELS), CODED),
    }


def _rows_like(fitted_on: np.ndarray) -> np.ndarray:
    """10,000 new rows drawn as the fitted ones were: numbers, and codes from those seen."""
    rng = np.random.default_rng(12)
    rows = rng.normal(size=(ROWS, fitted_on.shape[1]))
    codes = np.all(fitted_on == np.round(fitted_on), axis=0)
    rows[:, codes] = rng.integers(0, 4, (ROWS, int(codes.sum())))
    return rows


def _sample_csv(rows: np.ndarray) -> bytes:
    header = ",".join(f"x{i}" for i in range(rows.shape[1]))
    return (
        header + "\n" + "\n".join(",".join(repr(v) for v in row) for row in rows.tolist()) + "\n"
    ).encode()


async def _predict(fleet: InProcessFleet, name: str, rows: np.ndarray, output: str) -> list[Any]:
    answered = []
    for start in range(0, len(rows), 2_000):  # under the request's value limit
        chunk = rows[start : start + 2_000].tolist()
        response = await fleet.gateway.post(
            f"/api/v1/models/{name}/predict", headers=AUTH, json={"instances": chunk, "output": output}
        )
        assert response.status_code == 200, response.text
        answered += response.json()["predictions"]
    return answered


async def _deploy_with_sample(
    fleet: InProcessFleet, name: str, model: Any, sample: bytes, **fields: str
) -> Any:
    return await fleet.gateway.post(
        "/api/v1/models",
        headers=AUTH,
        data={"name": name, **fields},
        files={"file": ("m.skops", sio.dumps(model)), "sample": ("sample.csv", sample)},
    )


async def test_compiled_models_answer_as_scikit_learn_on_10000_rows(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        for name, (model, fitted_on) in _models().items():
            # The one-hot pipeline refuses unseen codes: its sample shows the verification real rows.
            deployed = (
                (await _deploy_with_sample(fleet, name, model, _sample_csv(fitted_on[:300]))).json()
                if name == "one-hot"
                else await fleet.deploy(name, sio.dumps(model))
            )
            assert deployed["runtime"]["runtime"] == "onnx", deployed
            assert deployed["runtime"]["largest_difference"] <= 1e-5, deployed
            rows = _rows_like(fitted_on)
            assert await _predict(fleet, name, rows, "predict") == model.predict(rows).tolist(), name
            probabilities = np.array(await _predict(fleet, name, rows, "predict_proba"))
            assert np.abs(probabilities - model.predict_proba(rows)).max() <= 1e-5, name


async def test_a_conversion_that_differs_stays_on_scikit_learn_or_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tampered conversion (the graph of the model with its coefficients negated: every label the
    other way) is caught by the verification: kept on scikit-learn under auto, refused under onnx."""
    model = LogisticRegression().fit(FEATURES, LABELS)
    flipped = LogisticRegression().fit(FEATURES, LABELS)
    flipped.coef_, flipped.intercept_ = -model.coef_, -model.intercept_
    tampered = choose_runtime(flipped, "auto").graph
    assert tampered is not None
    monkeypatch.setattr("artifacts.onnx_conversion._convert", lambda *_: tampered)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        refused = await _deploy_with_sample(fleet, "m", model, _sample_csv(FEATURES[:20]), runtime="onnx")
        assert refused.status_code == 422, refused.text
        assert "runtime=onnx refused" in refused.json()["error"], refused.text
        listed = await fleet.gateway.get("/api/v1/models", headers=AUTH)
        assert listed.json()["models"] == [], "a refused deploy stores nothing"

        kept = await fleet.deploy("m", sio.dumps(model))
        assert kept["runtime"]["runtime"] == "sklearn" and "another label" in kept["runtime"]["reason"], kept
        rows = FEATURES[:100]
        assert await _predict(fleet, "m", rows, "predict") == model.predict(rows).tolist()


async def test_the_runtime_shows_in_the_model_view_and_metrics(tmp_path: Path) -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(FEATURES, LABELS)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("compiled", sio.dumps(model))
        await fleet.deploy("plain", sio.dumps(model), runtime="sklearn")
        for name, runtime in (("compiled", "onnx"), ("plain", "sklearn")):
            (version,) = (await fleet.gateway.get(f"/api/v1/models/{name}", headers=AUTH)).json()["versions"]
            assert version["runtime"]["runtime"] == runtime, version
        # The node keeps the graph it serves in its cache (a sync prunes what no version needs).
        (compiled,) = (await fleet.gateway.get("/api/v1/models/compiled", headers=AUTH)).json()["versions"]
        assert (tmp_path / "cache" / "modelhost-1" / compiled["runtime"]["graph_sha256"]).is_file()
        metrics = (await fleet.gateway.get("/metrics")).text
        assert 'modelfleet_model_runtime_info{model="compiled",runtime="onnx",version="1"} 1.0' in metrics
        assert 'modelfleet_model_runtime_info{model="plain",runtime="sklearn",version="1"} 1.0' in metrics
        # Both answer the same rows alike; NaN, which the model refuses, is refused by the graph too.
        rows = FEATURES[:50]
        assert await _predict(fleet, "compiled", rows, "predict") == await _predict(
            fleet, "plain", rows, "predict"
        )
        for name in ("compiled", "plain"):
            refused = await fleet.gateway.post(
                f"/api/v1/models/{name}/predict", headers=AUTH, json={"instances": [[None] * 6]}
            )
            assert refused.status_code == 422, (name, refused.text)


async def test_a_bad_runtime_or_sample_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(FEATURES, LABELS)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        bad = [
            ({"runtime": "tensorrt"}, _sample_csv(FEATURES[:5])),
            ({"runtime": "sklearn"}, _sample_csv(FEATURES[:5])),  # nothing to verify
            ({}, b"x0,x1,x2,x3,x4,x5\n1,2,3\n"),
            ({}, b"x0,x1,x2,x3,x4,x5\n1,2,three,4,5,6\n"),
            ({}, b"\xff\xfe\n1,2\n"),
            ({}, b"only a header\n"),
        ]
        for fields, sample in bad:
            response = await _deploy_with_sample(fleet, "m", model, sample, **fields)
            assert response.status_code == 422, (fields, sample, response.text)
        listed = await fleet.gateway.get("/api/v1/models", headers=AUTH)
        assert listed.json()["models"] == []
