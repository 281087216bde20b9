"""Schema-driven fuzzing: schemathesis generates requests from each service's OpenAPI document
(valid and invalid) and checks that none gets a server error or an answer outside the schema."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import RunningFleet, start_fleet

pytestmark = pytest.mark.fleet

EXAMPLES_PER_OPERATION = 25
SEED = 1
# Path parameters that reach the core logic: the deployed example model, a node that is not there
# (draining a real one would take it out of service), and a scratch name for DELETE.
CONFIG = """
[parameters]
"path.name" = "iris"
"path.version" = "1"
"path.node" = "modelhost-9"
"path.item" = "ONE"

[[operations]]
include-method = "DELETE"
parameters = { "path.name" = "scratch" }
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    fleet = start_fleet(Path(tmp_path_factory.mktemp("fuzz")), nodes=1)
    yield fleet
    assert fleet.stop() == 0


def _fuzz(schema_url: str, workdir: Path, headers: dict[str, str], *extra: str) -> str:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", schema_url,
        "--checks", "not_a_server_error,response_schema_conformance",
        "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED),
        "--generation-database", "none", "--no-color", "--request-timeout", "30", *extra,
    ]  # fmt: skip
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=workdir)
    output = result.stdout + result.stderr
    summary = re.search(r"(\d+) generated, (.*)", output)
    operations = re.search(r"Operations:\s+(\d+) selected", output)
    print(
        f"schemathesis {schema_url} ({(len(headers) and 'with') or 'without'} token): "
        f"{operations[1] if operations else '?'} operations, "
        f"{summary[0] if summary else 'no summary'}, {EXAMPLES_PER_OPERATION} examples/op max, seed {SEED}"
    )
    assert result.returncode == 0, output[-6000:]
    assert summary and f"{summary[1]} passed" in summary[0], output[-3000:]
    return output


def test_the_inferrer_api_gives_no_server_error_and_keeps_its_schema(
    target: RunningFleet, tmp_path: Path
) -> None:
    schema = f"{target.url}/openapi.json"
    _fuzz(schema, tmp_path, target.auth)  # every operation, reached with the management token
    _fuzz(schema, tmp_path, {})  # and without one: refusals are schema-conforming 401s


def test_a_node_api_gives_no_server_error_and_keeps_its_schema(target: RunningFleet, tmp_path: Path) -> None:
    node = f"http://127.0.0.1:{target.node_ports[0]}/openapi.json"
    _fuzz(node, tmp_path, target.auth, "--exclude-path", "/internal/v1/drain")
