"""The OpenAPI documents say what the servers accept (schemathesis checks the rest against a real
fleet: tests/fleet/test_fuzz.py): a 405 names every method of its path, the settings' limits are in
the document, and the patterns of the document accept exactly what the servers' own checks do."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from artifacts.names import SEGMENT_SCHEMA, is_path_segment
from inferrer.api.fleet import SELFTEST_PATH, _is_item
from inferrer.app import create_app as create_gateway
from inferrer.settings import InferrerSettings
from modelhost.app import create_app as create_node
from modelhost.settings import ModelhostSettings

TOKEN = "m" * 43


@pytest.fixture
def gateway(tmp_path: Path) -> TestClient:
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(json.dumps({}))
    settings = InferrerSettings(
        repository_dir=tmp_path / "repository",
        data_dir=tmp_path / "data",
        nodes_file=nodes_file,
        max_selftest_items=7,
    )
    return TestClient(create_gateway(settings))


def test_a_405_allows_every_method_of_its_path(gateway: TestClient, tmp_path: Path) -> None:
    node = TestClient(create_node(ModelhostSettings(cache_dir=tmp_path, management_token=TOKEN)))
    cases = [
        (gateway, "OPTIONS", "/api/v1/models", "GET, POST"),  # two routes, one path
        (gateway, "PUT", "/api/v1/models/iris", "DELETE, GET"),
        (gateway, "HEAD", "/api/v1/models/iris", "DELETE, GET"),  # FastAPI serves no HEAD for a GET
        (gateway, "GET", "/api/v1/models/iris/predict", "POST"),  # a hot route
        (gateway, "DELETE", "/v2/models/iris/versions/1", "GET"),
        (node, "PUT", "/internal/v1/sync", "POST"),
    ]
    for client, method, path, allowed in cases:
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allowed, (method, path)
        if method != "HEAD":
            assert response.json()["error"]
    documented = gateway.get("/openapi.json").json()["paths"]["/api/v1/models"]
    assert set(documented) == {"get", "post"}  # as the Allow header says


def test_the_self_test_body_is_declared_as_checked(gateway: TestClient) -> None:
    schema = gateway.get("/openapi.json").json()["paths"][SELFTEST_PATH]["post"]["requestBody"]
    data = schema["content"]["application/json"]["schema"]["properties"]["data"]
    assert (data["minItems"], data["maxItems"]) == (1, 7)  # the configured limit
    item = data["items"]
    assert _declared(item, "ONE") and _declared(item, "a" * 200) and _declared(item, "...")
    for sample in _samples("a.~/ %"):
        assert _declared(item, sample) == _is_item(sample), sample
    assert not _declared(item, "a" * 201) and not _is_item("a" * 201)


def test_names_and_versions_are_declared_as_checked() -> None:
    for sample in [*_samples("a.-/"), "a" * 64, "a" * 65, "." * 64, "." * 65]:
        assert _declared(SEGMENT_SCHEMA, sample) == is_path_segment(sample), sample


def _samples(alphabet: str) -> list[str]:
    """Every string of up to 4 characters of `alphabet`."""
    return ["".join(chars) for n in range(5) for chars in itertools.product(alphabet, repeat=n)]


def _declared(schema: dict[str, Any], value: str) -> bool:
    """Whether a string schema (pattern, minLength, maxLength) accepts `value`, as JSON Schema reads
    it (for values without a line break: Python's `$` also matches before a final one)."""
    in_length = schema["minLength"] <= len(value) <= schema["maxLength"]
    return in_length and re.search(schema["pattern"], value) is not None
