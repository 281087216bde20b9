"""One CSV, typed one way: the same file sent to predict as a text/csv body, run as a job and dropped
into a watched folder reaches the model with the same values, so all three answer the same."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from datafiles.rows import csv_cell
from tests.api.watching import FAST, settled
from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio

# Blank and space-padded numbers, an empty cell, a code with leading zeros, text beside numbers.
CSV = "age,income,city\n52,7.5,oslo\n 31 ,  ,bergen\n   ,12.25,0150\n40,,tromso\n18, 3 ,oslo\n"


def _fitted() -> Pipeline:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 200).astype(float),
            "income": rng.normal(10, 3, 200),
            "city": rng.choice(["oslo", "bergen", "tromso", "0150"], 200),
        }
    )
    target = frame["age"] * 0.1 + frame["income"] + frame["city"].eq("oslo") * 3.0
    columns = ColumnTransformer(
        [
            ("num", SimpleImputer(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    return make_pipeline(columns, Ridge()).fit(frame, target)


def test_a_cell_is_blank_a_number_or_text() -> None:
    assert [csv_cell(c) for c in ["", "   ", " 31 ", "7.5", "-2", "0150", "-007", "0", "0.5", "oslo"]] == [
        None, None, 31.0, 7.5, -2.0, "0150", "-007", 0.0, 0.5, "oslo",
    ]  # fmt: skip


def _last_column(text: str) -> list[float]:
    return [float(row[-1]) for row in list(csv.reader(io.StringIO(text)))[1:]]


async def test_predict_a_job_and_a_watch_type_one_csv_alike(tmp_path: Path) -> None:
    model = _fitted()
    typed = pd.DataFrame(
        [[csv_cell(c) for c in row] for row in list(csv.reader(io.StringIO(CSV)))[1:]],
        columns=["age", "income", "city"],
    )
    expected = model.predict(typed).tolist()
    data = tmp_path / "data"
    (data / "incoming").mkdir(parents=True)
    (data / "people.csv").write_text(CSV)
    async with in_process_fleet(tmp_path, nodes=1, **FAST) as fleet:
        await fleet.deploy("people", sio.dumps(model))
        online = await fleet.gateway.post(
            "/api/v1/models/people/predict", content=CSV, headers={**AUTH, "content-type": "text/csv"}
        )
        assert online.status_code == 200, online.text
        job = await fleet.gateway.post(
            "/api/v1/jobs", json={"model": "people", "input": "people.csv"}, headers=AUTH
        )
        assert job.status_code == 202, job.text
        await fleet.finished_job(job.json()["id"])
        batch = await fleet.gateway.get(f"/api/v1/jobs/{job.json()['id']}/result", headers=AUTH)
        watch = {"name": "w", "input": "incoming", "model": "people", "output": "scored"}
        assert (await fleet.gateway.post("/api/v1/watches", json=watch, headers=AUTH)).status_code == 201
        (data / "incoming" / "people.csv").write_text(CSV)
        assert [f["state"] for f in await settled(fleet, "w", 1)] == ["done"]
    watched = (data / "scored" / "model=people" / "version=1" / "people.csv").read_text()
    assert online.json()["predictions"] == pytest.approx(expected, abs=1e-9)
    assert _last_column(batch.text) == pytest.approx(expected, abs=1e-9)
    assert _last_column(watched) == pytest.approx(expected, abs=1e-9)
