"""Prediction: validated here, then sent through nginx to whichever node it picks."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from inferrer import dependencies as deps
from inferrer.payload import parse_predict_body
from wire.json import ORJSON_OPTIONS

router = APIRouter()


@router.post("/api/v1/models/{name}/predict")
async def predict(name: str, request: Request) -> Response:
    manifest = deps.repository(request).get(name)
    max_rows = deps.settings(request).max_rows
    parsed = parse_predict_body(await request.body(), manifest.signature, max_rows)
    upstream_body = orjson.dumps(
        {"version": manifest.version, "instances": parsed.rows, "output": parsed.output},
        option=ORJSON_OPTIONS,
    )
    start = time.perf_counter()
    answer = await deps.manager(request).predict(name, upstream_body)
    node = answer.node or "unknown"
    if answer.status_code == 200:
        metrics = deps.metrics(request)
        labels = (name, manifest.version, node)
        metrics.upstream_latency.labels(*labels).observe(time.perf_counter() - start)
        metrics.predictions.labels(*labels).inc()
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type="application/json",
        headers={"X-Modelhost-Node": node},
    )
