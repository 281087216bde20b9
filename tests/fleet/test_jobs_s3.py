"""A batch job whose file is an object in SeaweedFS, a real S3-compatible server (a process on loopback): the
gateway plans it by ranged reads, each node reads its own range from the store and writes its part
there, and the manifest and _SUCCESS land beside the parts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from datafiles.locations import S3Settings, Storage
from deploy.ephemeral_fleet import RunningFleet, start_fleet
from testbed.s3_server import env_lines

pytestmark = pytest.mark.fleet

ROWS = 50_000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, s3: S3Settings) -> Iterator[RunningFleet]:
    running = start_fleet(  # the store's settings in the fleet's .env, as a user would give them
        Path(tmp_path_factory.mktemp("jobs-s3")),
        nodes=2,
        extra_args=("--no-example",),
        env_lines=env_lines(s3),
    )
    yield running
    assert running.stop() == 0, running.log()


def test_a_job_reads_and_writes_s3_through_the_endpoint(fleet: RunningFleet, s3: S3Settings) -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(ROWS, 3)).round(5), columns=["a", "b", "c"])
    model = LogisticRegression().fit(frame, (frame["a"] > frame["c"]).astype(int))
    assert fleet.deploy("s3model", sio.dumps(model)).status_code == 201
    storage = Storage(Path("."), s3)
    source = storage.location("s3://batch/in/rows.csv")
    storage.filesystem(source).mkdir("batch")
    storage.write_atomic(source, frame.assign(id=range(ROWS)).to_csv(index=False).encode())

    body = {"model": "s3model", "input": source.url, "partition_bytes": 128 * 1024}
    job = httpx.post(f"{fleet.url}/api/v1/jobs", json=body, headers=fleet.auth, timeout=60).json()
    assert job["partitions"] >= 8, job
    view = fleet.finished_job(job["id"])
    assert view["status"] == "succeeded", view
    assert view["output"]["location"] == f"s3://batch/modelfleet-jobs/{job['id']}"
    result = httpx.get(f"{fleet.url}/api/v1/jobs/{job['id']}/result", headers=fleet.auth, timeout=120)
    lines = result.text.splitlines()
    assert [int(line.split(",")[3]) for line in lines[1:]] == list(range(ROWS))
    assert [int(line.split(",")[4]) for line in lines[1:]] == model.predict(frame).tolist()
    output = storage.location(view["output"]["location"] + "/_manifest.json")
    manifest = orjson.loads(storage.read_all(output))
    assert manifest["rows"] == ROWS and {p["node"] for p in manifest["parts"]} == {
        "modelhost-1",
        "modelhost-2",
    }
    assert storage.filesystem(output).exists(f"batch/modelfleet-jobs/{job['id']}/_SUCCESS")
    print(f"s3:// job: {ROWS} rows, {job['partitions']} partitions, read and written through the endpoint")
