"""docs/reliability.md: model names are "checked before any path is built (and again on the
nodes)". A node app is called directly, behind a gateway that answers whatever it is asked (as a
gateway with a bug, or a caller holding the token, would), with names that are not one path
segment: the node refuses them and writes nothing into its cache or data directory."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from artifacts.formats import ArtifactFormat, sha256_hex
from artifacts.manifest import Manifest
from artifacts.schema import inspect_schema
from modelhost.app import create_app
from modelhost.settings import ModelhostSettings
from tests.in_process import AUTH, TOKEN

pytestmark = pytest.mark.anyio

BAD_NAMES = ["..", ".", "a/b", "../m", "m/..", "a b", "x" * 65]


@dataclass
class _ObligingGateway:
    """Answers every manifest asked for, naming what was asked, and every artifact; says it stores
    `manifest`'s version."""

    artifact: bytes
    manifest: Manifest
    desired_load: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        self.calls.append(path)
        if path == "/internal/v1/desired":
            # It stores `m` version 1: a sync that runs after a predict keeps its cached artifact.
            stored = {
                "name": self.manifest.name,
                "version": self.manifest.version,
                "sha256": self.manifest.sha256,
            }
            return httpx.Response(200, json={"load": self.desired_load, "keep": [stored]})
        if path.startswith("/internal/v1/manifests/") and path.count("/") == 5:
            name, version = (unquote(part) for part in path.split("/")[4:])
            return httpx.Response(200, json={**self._dumped(), "name": name, "version": version})
        if path.startswith("/internal/v1/artifacts/"):
            return httpx.Response(200, content=self.artifact)
        return httpx.Response(404, json={"error": "no such route"})

    def _dumped(self) -> dict[str, Any]:
        return self.manifest.model_dump(mode="json")

    @property
    def fetched(self) -> list[str]:
        return [c for c in self.calls if c.startswith("/internal/v1/artifacts/")]


@pytest.fixture(scope="module")
def gateway_parts() -> tuple[bytes, Manifest]:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(40, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    data = sio.dumps(model)
    manifest = Manifest(
        name="m", version="1", format=ArtifactFormat.SKOPS, sha256=sha256_hex(data), size=len(data),
        created=datetime.now(UTC), signature=inspect_schema(model),
    )  # fmt: skip
    return data, manifest


@contextlib.asynccontextmanager
async def _node(tmp_path: Path, gateway: _ObligingGateway) -> AsyncIterator[httpx.AsyncClient]:
    settings = ModelhostSettings(
        node_id="n1", inferrer_url="http://inferrer", management_token=TOKEN,
        cache_dir=tmp_path / "cache", data_dir=tmp_path / "data", sync_interval_s=60,
    )  # fmt: skip
    (tmp_path / "data").mkdir()
    app = create_app(settings, transport=httpx.MockTransport(gateway))
    # An exception the app lets through is the 500 a server would answer, not one raised here.
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://n1")
    async with app.router.lifespan_context(app), client:
        yield client


def _written(tmp_path: Path) -> list[Path]:
    return [p for folder in ("cache", "data") for p in (tmp_path / folder).rglob("*")]


def _predict_body(manifest: Manifest, version: str) -> dict[str, Any]:
    return {"version": version, "sha256": manifest.sha256, "instances": [[0.1, 0.2, 0.3]]}


async def _predict_naming(
    node: httpx.AsyncClient, manifest: Manifest, name: str
) -> tuple[httpx.Response, httpx.Response]:
    """Predict calls naming `name` as the model (in the path) and as its version (in the body)."""
    path = f"/api/v1/models/{quote(name, safe='')}/predict"
    by_name = await node.post(path, json=_predict_body(manifest, "1"), headers=AUTH)
    by_version = await node.post("/api/v1/models/m/predict", json=_predict_body(manifest, name), headers=AUTH)
    return by_name, by_version


async def test_the_gateway_and_its_manifests_work_for_a_name_that_is_one_segment(
    tmp_path: Path, gateway_parts: tuple[bytes, Manifest]
) -> None:
    """What the refusals below are measured against: the same node and gateway serve `m`."""
    gateway = _ObligingGateway(*gateway_parts)
    async with _node(tmp_path, gateway) as node:
        answer = await node.post(
            "/api/v1/models/m/predict", json=_predict_body(gateway.manifest, "1"), headers=AUTH
        )
    assert answer.status_code == 200, answer.text
    assert gateway.fetched and [p.name for p in _written(tmp_path)] == [gateway.manifest.sha256]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_a_predict_naming_no_segment_loads_and_writes_nothing(
    tmp_path: Path, gateway_parts: tuple[bytes, Manifest], name: str
) -> None:
    """As the model's name in the path, or as its version in the body: the manifest the gateway
    answers for it does not pass the node's own check, so nothing is fetched or cached."""
    gateway = _ObligingGateway(*gateway_parts)
    async with _node(tmp_path, gateway) as node:
        by_name, by_version = await _predict_naming(node, gateway.manifest, name)
    assert by_name.status_code >= 400 and by_version.status_code >= 400, (by_name.text, by_version.text)
    assert gateway.fetched == []
    assert _written(tmp_path) == []


@pytest.mark.parametrize("name", ["..", "a b"])
async def test_a_predict_naming_no_segment_is_refused_by_the_node_itself(
    tmp_path: Path, gateway_parts: tuple[bytes, Manifest], name: str
) -> None:
    gateway = _ObligingGateway(*gateway_parts)
    async with _node(tmp_path, gateway) as node:
        gateway.calls.clear()  # the start's sync
        by_name, by_version = await _predict_naming(node, gateway.manifest, name)
    assert 400 <= by_name.status_code < 500 and 400 <= by_version.status_code < 500
    assert gateway.calls == []  # refused before any URL or path is built from it


@pytest.mark.parametrize("field_name", ["name", "version"])
@pytest.mark.parametrize("name", BAD_NAMES)
async def test_a_sync_warming_a_manifest_naming_no_segment_is_refused(
    tmp_path: Path, gateway_parts: tuple[bytes, Manifest], field_name: str, name: str
) -> None:
    gateway = _ObligingGateway(*gateway_parts)
    bad = {**gateway.manifest.model_dump(mode="json"), field_name: name}
    async with _node(tmp_path, gateway) as node:
        answer = await node.post("/internal/v1/sync", json={"warm": [bad]}, headers=AUTH)
        loaded = (await node.get("/internal/v1/models", headers=AUTH)).json()
    assert answer.status_code == 422, answer.text
    assert loaded == [] and gateway.fetched == []
    assert _written(tmp_path) == []


@pytest.mark.parametrize("field_name", ["name", "version"])
@pytest.mark.parametrize("name", ["..", "a/b"])
async def test_a_desired_state_naming_no_segment_is_refused(
    tmp_path: Path, gateway_parts: tuple[bytes, Manifest], field_name: str, name: str
) -> None:
    """The gateway's desired state is checked as a sync's body is: the node stays not ready."""
    gateway = _ObligingGateway(*gateway_parts)
    gateway.desired_load = [{**gateway.manifest.model_dump(mode="json"), field_name: name}]
    async with _node(tmp_path, gateway) as node:
        synced = await node.post("/internal/v1/sync", json={}, headers=AUTH)
        ready = await node.get("/health/ready")
    assert synced.status_code == 424, synced.text  # what the gateway answered is at fault
    assert "outside the contract" in synced.json()["error"]
    assert ready.status_code == 503
    assert gateway.fetched == [] and _written(tmp_path) == []


@pytest.mark.parametrize("field_name", ["model", "version", "job_id"])
@pytest.mark.parametrize("name", BAD_NAMES)
async def test_a_partition_call_naming_no_segment_is_refused(
    tmp_path: Path, gateway_parts: tuple[bytes, Manifest], field_name: str, name: str
) -> None:
    gateway = _ObligingGateway(*gateway_parts)
    call = {
        "job_id": "job-1", "partition": 0, "model": "m", "version": "1", "sha256": gateway.manifest.sha256,
        "input": "in.jsonl", "format": "jsonl", "start": 0, "end": 16, "output_part": "out/part-00000.jsonl",
        "errors_part": "out/_errors/part-00000.jsonl", field_name: name,
    }  # fmt: skip
    async with _node(tmp_path, gateway) as node:
        (tmp_path / "data" / "in.jsonl").write_bytes(b"[0.1, 0.2, 0.3]\n")
        answer = await node.post("/internal/v1/partitions", json=call, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert gateway.fetched == []
    assert _written(tmp_path) == [tmp_path / "data" / "in.jsonl"]
