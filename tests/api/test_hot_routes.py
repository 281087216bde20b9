"""The predict routes are served ahead of FastAPI's own stack (wire/hot_routes.py), and still answer
as every other route does: behind a root path, with a request id, and with a 500 for a failure no
handler knows."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.in_process import AUTH, in_process_fleet

pytestmark = pytest.mark.anyio
ROW = {"instances": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]}


async def test_a_hot_route_is_served_behind_a_root_path(tmp_path: Path, pipeline_skops: bytes) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("m", pipeline_skops)
        transport = httpx.ASGITransport(fleet.gateway_app, root_path="/behind")
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            answer = await client.post("/behind/api/v1/models/m/predict", headers=AUTH, json=ROW)
            wrong_method = await client.get("/behind/api/v1/models/m/predict", headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "m"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"


async def test_a_failure_no_handler_knows_answers_500_with_the_request_id(
    tmp_path: Path, pipeline_skops: bytes
) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("m", pipeline_skops)
        service = fleet.gateway_app.state.prediction

        def broken(name: str, version: str | None) -> None:
            raise RuntimeError("a bug")

        service.resolve = broken  # a fault the API cannot provoke: a bug in the gateway
        transport = httpx.ASGITransport(fleet.gateway_app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            answer = await client.post(
                "/api/v1/models/m/predict", headers={**AUTH, "x-request-id": "trace-500"}, json=ROW
            )
    assert answer.status_code == 500
    assert answer.text == "Internal Server Error"
    assert answer.headers["x-request-id"] == "trace-500"
