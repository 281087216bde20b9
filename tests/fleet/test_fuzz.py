"""Schema-driven fuzzing: schemathesis generates requests from each service's OpenAPI document
(valid and invalid) and runs every one of its checks: no server error, answers (statuses, bodies,
headers) as declared, every schema-valid request accepted and every schema-violating one refused,
a route that declares a token refuses a request without one or with a wrong one (with no inference
token configured, inference routes declare none), 405s that name the allowed methods. The answers
its generated requests seldom reach (predictions: random rows rarely fit the model) are checked
against the same documents with requests made to reach them."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.ephemeral_fleet import RunningFleet, free_ports, start_fleet
from deploy.example_model import EXAMPLE_NAME, EXAMPLE_ROW
from tests.declared import assert_declared

pytestmark = pytest.mark.fleet

EXAMPLES_PER_OPERATION = 20
SEED = 1
# Path parameters that reach the core logic: the deployed example model, a node that is not there
# (draining a real one would take it out of service), and a scratch name for DELETE.
#
# A schema-valid request may still be refused where only the deployed model (or the uploaded file)
# can tell, at run time, what it takes; no static schema can say it, so those operations' documents
# say it in words (their 4XX description) and their positive_data_acceptance also expects:
# - predictions (gateway and node): 422 for rows of the wrong number of values, records or CSV
#   columns not named as the model's features, an output the model does not offer; 413 for more rows
#   than the limit for the model's number of features;
# - V2 inference: 400 for the same, and for `data` that does not hold as many values of the datatype
#   as `shape` multiplies to;
# - a node's partition call: 422 for a location outside the data directory, or rows of the file
#   that cannot be predicted;
# - a watch: 400 for a location outside the data directory (a link out, only the disk can tell), 422
#   for a prediction the model does not offer;
# - a job: the same, and 422 for a file whose format its name does not tell (give `format`);
# - a model upload: 422 for a file that is not a loadable model (only its content tells), 413 for one
#   over the upload limit;
# - a graph: 422 for a document that is not a valid graph over the deployed models (the models tell),
#   400 for YAML that does not parse;
# - a stream binding: 422 for a prediction the model does not offer, a version or prediction given
#   with `converge`, input, output and dead letter that are not three streams, a key the fleet keeps
#   (`modelfleet:`), or a key that holds something other than a stream (only the broker can tell).
ACCEPTED = '"2xx", "3xx", "401", "403", "404", "409", "429", "5xx"'  # schemathesis's default
CONFIG = f"""
[parameters]
"path.name" = "iris"
"path.version" = "1"
"path.node" = "modelhost-9"
"path.item" = "ONE"

[[operations]]
include-method = "DELETE"
parameters = {{ "path.name" = "scratch" }}

[[operations]]
include-path-regex = "/predict$"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "413", "422"]

[[operations]]
include-path-regex = "/infer$"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "400", "413"]

[[operations]]
include-path-regex = "^/invocations$"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "413", "415", "422"]

[[operations]]
include-path-regex = "/internal/v1/partitions$"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "422"]

[[operations]]
include-name = "POST /api/v1/watches"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "400", "422"]

[[operations]]
include-name = "POST /api/v1/jobs"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "400", "422"]

[[operations]]
include-name = "POST /api/v1/streams"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "422"]

[[operations]]
include-name = "POST /api/v1/graphs"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "400", "422"]

[[operations]]
include-name = "POST /api/v1/models"
checks.positive_data_acceptance.expected-statuses = [{ACCEPTED}, "413", "422"]
"""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    # Generated s3:// locations (jobs, watches) go to a closed port on loopback, never further.
    s3 = "AWS_ENDPOINT_URL_S3=http://127.0.0.1:9\nAWS_ACCESS_KEY_ID=fuzz\nAWS_SECRET_ACCESS_KEY=fuzz\n"
    (broker_port,) = free_ports(1)  # stream bindings reach a real broker
    fleet = start_fleet(
        Path(tmp_path_factory.mktemp("fuzz")), nodes=1, env_lines=f"{s3}BROKER_PORT={broker_port}\n"
    )
    yield fleet
    assert fleet.stop() == 0


def _fuzz(schema_url: str, workdir: Path, token: str | None, *extra: str) -> str:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", schema_url,
        "--checks", "all", "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED),
        "--generation-database", "none", "--no-color", "--request-timeout", "30", *extra,
    ]  # fmt: skip
    if token:
        # Spelled as the document's bearer schemes name the header, so that the ignored_auth check
        # can take the token away (and put a wrong one) to see the route refuse.
        argv += ["--header", f"Authorization: Bearer {token}"]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=workdir)
    output = result.stdout + result.stderr
    summary = re.search(r"(\d+) generated, (.*)", output)
    operations = re.search(r"Operations:\s+(\d+) selected", output)
    print(
        f"schemathesis {schema_url} ({'with' if token else 'without'} token): "
        f"{operations[1] if operations else '?'} operations, "
        f"{summary[0] if summary else 'no summary'}, {EXAMPLES_PER_OPERATION} examples/op max, "
        f"seed {SEED}, {time.monotonic() - started:.0f} s"
    )
    assert result.returncode == 0, output[-6000:]
    assert summary and f"{summary[1]} passed" in summary[0], output[-3000:]
    return output


def test_predictions_and_the_self_test_answer_as_declared(target: RunningFleet) -> None:
    """JSON and CSV predictions (active and pinned), V2 inference (with and without an id), the
    self-test and a node's own predict, each checked against the document of the app that answered."""
    gateway = httpx.get(f"{target.url}/openapi.json").json()
    node_url = f"http://127.0.0.1:{target.node_ports[0]}"
    node = httpx.get(f"{node_url}/openapi.json").json()

    def post(document: dict[str, Any], base: str, path: str, values: dict[str, str], **kwargs: Any) -> Any:
        headers = {**target.auth, **kwargs.pop("headers", {})}
        response = httpx.post(base + path.format(**values), headers=headers, timeout=30, **kwargs)
        assert response.status_code == 200, response.text
        return assert_declared(document, "POST", path, response)

    active, pinned = {"name": EXAMPLE_NAME}, {"name": EXAMPLE_NAME, "version": "1"}
    rows = [EXAMPLE_ROW, EXAMPLE_ROW]
    predict = "/api/v1/models/{name}/predict"
    predict_pinned = "/api/v1/models/{name}/versions/{version}/predict"
    assert len(post(gateway, target.url, predict, active, json={"instances": rows})["predictions"]) == 2
    post(gateway, target.url, predict, active, json={"instances": rows, "output": "predict_proba"})
    post(gateway, target.url, predict_pinned, pinned, json={"instances": rows})
    csv_rows = "\n".join(",".join(str(v) for v in row) for row in rows)
    csv_headers = {"content-type": "text/csv", "accept": "text/csv"}
    assert post(gateway, target.url, predict, active, content=csv_rows, headers=csv_headers).count("\n") == 2

    tensor = {
        "name": "input-0",
        "shape": [2, 4],
        "datatype": "FP64",
        "data": [v for row in rows for v in row],
    }
    infer, infer_pinned = "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"
    assert post(gateway, target.url, infer, active, json={"id": "r-1", "inputs": [tensor]})["id"] == "r-1"
    outputs = [{"name": "predict"}, {"name": "predict_proba"}]
    answered = post(gateway, target.url, infer_pinned, pinned, json={"inputs": [tensor], "outputs": outputs})
    assert "id" not in answered and [o["shape"] for o in answered["outputs"]] == [[2], [2, 3]]

    selftest = post(gateway, target.url, "/api/test/sendtomodelhost", {}, json={"data": ["ONE", "TWO"]})
    assert sum(selftest["nodes"].values()) == 2

    model = httpx.get(f"{target.url}/api/v1/models/{EXAMPLE_NAME}", headers=target.auth).json()
    sha256 = model["versions"][0]["served_sha256"]  # the artifact nodes load
    body = {"version": "1", "sha256": sha256, "instances": rows, "outputs": ["predict", "predict_proba"]}
    assert post(node, node_url, "/api/v1/models/{name}/predict", active, json=body)["version"] == "1"


def test_the_inferrer_api_gives_no_server_error_and_keeps_its_schema(
    target: RunningFleet, tmp_path: Path
) -> None:
    schema = f"{target.url}/openapi.json"
    _fuzz(schema, tmp_path, target.token)  # every operation, reached with the management token
    _fuzz(schema, tmp_path, None)  # and without one: management refused, inference (no token set) served


def test_a_node_api_gives_no_server_error_and_keeps_its_schema(target: RunningFleet, tmp_path: Path) -> None:
    node = f"http://127.0.0.1:{target.node_ports[0]}/openapi.json"
    _fuzz(node, tmp_path, target.token, "--exclude-path", "/internal/v1/drain")
