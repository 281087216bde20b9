"""Series labelled by version go with the version: a deploy a minute must not grow the metrics (and
Prometheus's memory) for good. In-process, with retention keeping one version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio


def _model(seed: int) -> bytes:
    features = np.random.default_rng(seed).normal(size=(40, 3))
    return sio.dumps(LogisticRegression().fit(features, (features[:, 0] > 0).astype(int)))


async def test_series_of_retired_versions_are_removed_on_the_gateway_and_the_nodes(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=1, keep_versions=1) as fleet:
        for seed in range(4):
            await fleet.deploy("m", _model(seed))
            predicted = await fleet.gateway.post("/api/v1/models/m/predict", json={"instances": [[0, 1, 2]]})
            assert predicted.status_code == 200
        await asyncio.sleep(1.2)  # the node's next syncs (every 0.5 s) see the retired versions gone
        await fleet.gateway.post("/api/v1/models/m/predict", json={"instances": [[0, 1, 2]]})
        gateway = (await fleet.gateway.get("/metrics")).text
        node = (await fleet.nodes["modelhost-1"].get("/metrics", headers=AUTH)).text
    for text, metric in (
        (gateway, "modelfleet_inferrer_predictions_total{"),
        (node, "modelfleet_modelhost_predicted_rows_total{"),
        (node, "modelfleet_modelhost_model_load_duration_seconds_count{"),
    ):
        versions = {
            line.split('version="')[1].split('"')[0] for line in text.splitlines() if line.startswith(metric)
        }
        assert versions == {"4"}, (metric, versions)


async def test_a_version_deployed_again_after_its_series_were_removed_is_counted_again(
    tmp_path: Path,
) -> None:
    """The gateway looks a series up once and keeps it: removing the series must drop it there
    too, or the version's new predictions would count in a series no scrape sees."""
    body = {"instances": [[0, 1, 2]]}
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("other", _model(2))
        await fleet.deploy("m", _model(0), version="1")
        assert (await fleet.gateway.post("/api/v1/models/m/predict", json=body)).status_code == 200
        assert (await fleet.gateway.delete("/api/v1/models/m", headers=AUTH)).status_code == 200
        # The next prediction, of any model, removes the series of the versions no longer stored.
        assert (await fleet.gateway.post("/api/v1/models/other/predict", json=body)).status_code == 200
        removed = (await fleet.gateway.get("/metrics")).text
        await fleet.deploy("m", _model(1), version="1")
        for _ in range(2):
            assert (await fleet.gateway.post("/api/v1/models/m/predict", json=body)).status_code == 200
        gateway = (await fleet.gateway.get("/metrics")).text

    def counted(text: str) -> list[float]:
        return [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("modelfleet_inferrer_predictions_total{") and 'model="m"' in line
        ]

    assert counted(removed) == []
    assert counted(gateway) == [2.0]
