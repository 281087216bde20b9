"""A burst through the real fleet with batching on: mixed models, versions and outputs come back
exact and in order, and one invalid request in the burst fails alone."""

from __future__ import annotations

import asyncio
import random
import re

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from artifacts.onnx_conversion import TOLERANCE
from deploy.ephemeral_fleet import RunningFleet

pytestmark = pytest.mark.fleet


def _fit(kind: str, seed: int) -> object:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(300, 5))
    labels = (features[:, seed % 5] + features[:, 0] > 0).astype(int)
    if kind == "forest":
        return RandomForestClassifier(n_estimators=10, random_state=seed).fit(features, labels)
    return LogisticRegression().fit(features, labels)


def test_a_mixed_burst_is_exact_and_a_bad_request_fails_alone(fleet: RunningFleet) -> None:
    models = {("burst-a", "1"): _fit("linear", 1), ("burst-a", "2"): _fit("linear", 2)}
    models[("burst-b", "1")] = _fit("forest", 3)
    for (name, version), model in models.items():
        deployed = fleet.deploy(name, sio.dumps(model), version=version)
        assert deployed.status_code == 201, deployed.text

    rng = random.Random(5)
    requests = []
    for i in range(120):
        name, version = rng.choice(list(models))
        output = rng.choice(["predict", "predict_proba"])
        rows = np.random.default_rng(i).normal(size=(rng.randint(1, 3), 5)).round(6)
        requests.append((name, version, output, rows))
    bad_index = 57
    metrics_before = httpx.get(f"{fleet.url}/metrics").text

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
            calls = []
            for i, (name, version, output, rows) in enumerate(requests):
                instances = [[1.0, 2.0]] if i == bad_index else rows.tolist()
                url = f"{fleet.url}/api/v1/models/{name}/versions/{version}/predict"
                calls.append(client.post(url, json={"instances": instances, "output": output}))
            return await asyncio.gather(*calls)

    answers = asyncio.run(burst())
    for i, ((name, version, output, rows), response) in enumerate(zip(requests, answers, strict=True)):
        if i == bad_index:
            assert response.status_code == 422 and "expected 5 features" in response.json()["error"]
            continue
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model"], body["version"]) == (name, version)
        expected = getattr(models[(name, version)], output)(rows)
        np.testing.assert_allclose(body["predictions"], expected, rtol=0, atol=TOLERANCE)  # compiled to ONNX

    def upstream_calls(text: str) -> float:
        return sum(
            float(n)
            for n in re.findall(r'modelfleet_inferrer_batch_rows_count\{model="burst-\w"\} (\S+)', text)
        )

    calls = upstream_calls(httpx.get(f"{fleet.url}/metrics").text) - upstream_calls(metrics_before)
    print(f"119 valid requests of mixed models/versions/outputs went upstream in {calls:.0f} calls")
    assert calls < 119
