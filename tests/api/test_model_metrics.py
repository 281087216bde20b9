"""Every prediction request is labelled with its route template and counted for its model at the
gateway (REST, pinned version, Open Inference Protocol, SageMaker), whatever its answer; names that
are not stored add no series, and a deleted model's series go with it. In-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

from tests.in_process import AUTH, InProcessFleet, in_process_fleet

pytestmark = pytest.mark.anyio
ROW = [0.0, 1.0, 2.0]
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": ROW}]}


def _model() -> bytes:
    features = np.random.default_rng(0).normal(size=(40, 3))
    return sio.dumps(LogisticRegression().fit(features, (features[:, 0] > 0).astype(int)))


async def _samples(fleet: InProcessFleet, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = (await fleet.gateway.get("/metrics")).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def _send_every_kind(fleet: InProcessFleet, model: str) -> None:
    gateway = fleet.gateway
    for path, body in (
        (f"/api/v1/models/{model}/predict", {"instances": [ROW]}),
        (f"/api/v1/models/{model}/versions/1/predict", {"instances": [ROW]}),
        (f"/v2/models/{model}/infer", V2_BODY),
        (f"/v2/models/{model}/versions/1/infer", V2_BODY),
    ):
        assert (await gateway.post(path, json=body)).status_code == 200, path
    sagemaker = await gateway.post(
        "/invocations", json={"instances": [ROW]}, headers={"X-Amzn-SageMaker-Target-Model": model}
    )
    assert sagemaker.status_code == 200, sagemaker.text
    wrong_width = await gateway.post(f"/api/v1/models/{model}/predict", json={"instances": [[1.0]]})
    assert wrong_width.status_code == 422
    assert (await gateway.get(f"/v2/models/{model}/infer")).status_code == 405  # a route, another method


async def test_every_prediction_route_is_labelled_with_its_template(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("m", _model(), version="1")
        await _send_every_kind(fleet, "m")
        requests = await _samples(fleet, "modelfleet_http_requests_total")
    routes = {dict(labels)["route"] for labels in requests}
    assert {
        "/api/v1/models/{name}/predict",
        "/api/v1/models/{name}/versions/{version}/predict",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/invocations",
    } <= routes
    assert "unmatched" not in routes, routes
    assert ("GET", "/v2/models/{name}/infer", "405") in {
        (dict(labels)["method"], dict(labels)["route"], dict(labels)["status"]) for labels in requests
    }


async def test_a_body_refused_before_routing_is_labelled_with_its_route(tmp_path: Path) -> None:
    """The body limit answers 413 before any route runs: the request still gets its template."""
    async with in_process_fleet(tmp_path, nodes=1, max_body_bytes=1024) as fleet:
        await fleet.deploy("m", _model(), version="1")
        big = {"instances": [ROW] * 200}
        assert (await fleet.gateway.post("/api/v1/models/m/predict", json=big)).status_code == 413
        assert (await fleet.gateway.post("/v2/models/m/infer", json=big)).status_code == 413
        requests = await _samples(fleet, "modelfleet_http_requests_total")
    refused = {dict(labels)["route"] for labels in requests if dict(labels)["status"] == "413"}
    assert refused == {"/api/v1/models/{name}/predict", "/v2/models/{name}/infer"}, requests


async def test_each_request_for_a_stored_model_is_counted_for_it_with_its_errors(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("m", _model(), version="1")
        await _send_every_kind(fleet, "m")
        for unknown in ("/api/v1/models/nope/predict", "/v2/models/nope/infer"):
            assert (await fleet.gateway.post(unknown, json={"instances": [ROW]})).status_code == 404
        counts = await _samples(fleet, "modelfleet_inferrer_model_request_duration_seconds_count")
        errors = await _samples(fleet, "modelfleet_inferrer_model_request_errors_total")
    assert counts == {(("model", "m"),): 6.0}  # five answered, one refused for its width
    zero_5xx = {(("model", "m"), ("status", status)): 0.0 for status in ("500", "502", "503", "504")}
    assert errors == {(("model", "m"), ("status", "422")): 1.0, **zero_5xx}  # 5xx at 0: rate() sees the first


async def test_a_deleted_models_series_go_with_it(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("gone", _model())
        await fleet.deploy("kept", _model())
        for model in ("gone", "kept"):
            await fleet.gateway.post(f"/api/v1/models/{model}/predict", json={"instances": [[1.0]]})
        assert (await fleet.gateway.delete("/api/v1/models/gone", headers=AUTH)).status_code == 200
        # The next prediction, of any model, removes the series of models no longer stored.
        assert (
            await fleet.gateway.post("/api/v1/models/kept/predict", json={"instances": [ROW]})
        ).status_code == 200
        counts = await _samples(fleet, "modelfleet_inferrer_model_request_duration_seconds_count")
        errors = await _samples(fleet, "modelfleet_inferrer_model_request_errors_total")
    assert counts == {(("model", "kept"),): 2.0}
    assert {labels: value for labels, value in errors.items() if value} == {
        (("model", "kept"), ("status", "422")): 1.0
    }
    assert {dict(labels)["model"] for labels in errors} == {"kept"}


async def test_a_scrape_does_not_count_itself_in_flight(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("m", _model(), version="1")
        await _send_every_kind(fleet, "m")
        in_flight = await _samples(fleet, "modelfleet_http_requests_in_flight")
    assert in_flight == {(("service", "inferrer"),): 0.0}
