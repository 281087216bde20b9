"""`modelfleet migrate`: a one-machine fleet with deployed models and finished jobs moves into shared
stores (a real PostgreSQL, a real S3 bucket on SeaweedFS), and a fleet started afresh on them, with
an empty data directory of its own, serves and lists all of it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from datafiles.locations import S3Settings, Storage
from deploy.ephemeral_fleet import RunningFleet, start_fleet
from inferrer.jobs.schema import metadata as job_tables
from inferrer.jobs.schema import open_engine
from inferrer.state.shared_schema import metadata as index_tables
from inferrer.state.shared_schema import open_index_engine

pytestmark = pytest.mark.fleet
REPOSITORY = Path(__file__).resolve().parents[2]
ROWS = [[0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.6], [0.5, 0.1, 0.9, 0.2]]


def _model(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return sio.dumps(LogisticRegression().fit(rng.random((60, 4)), np.arange(60) % 3))


def _shared_lines(postgres: str, s3: S3Settings, tmp_path: Path) -> str:
    for drop, engine in (
        (index_tables.drop_all, open_index_engine(postgres)),
        (job_tables.drop_all, open_engine(postgres)),
    ):
        drop(engine)  # an empty store, whatever an earlier test left
        engine.dispose()
    bucket = f"fleet-{uuid.uuid4().hex[:10]}"
    storage = Storage(tmp_path, s3)
    storage.filesystem(storage.location(f"s3://{bucket}/x")).mkdir(bucket)
    return (
        f"INFERRER_REPOSITORY_DB_URL={postgres}\nINFERRER_REPOSITORY_ARTIFACTS_URL=s3://{bucket}/models\n"
        f"INFERRER_JOBS_DB_URL={postgres}\nAWS_ENDPOINT_URL_S3={s3.endpoint_url}\nAWS_REGION={s3.region}\n"
        f"AWS_ACCESS_KEY_ID={s3.key_id}\nAWS_SECRET_ACCESS_KEY={s3.secret}\n"
    )


def _state(fleet: RunningFleet) -> dict[str, Any]:
    """What a user sees: the models with their versions and active one, predictions of the active
    and of a pinned version, and the finished jobs with their results."""
    with httpx.Client(base_url=fleet.url, headers=fleet.auth, timeout=60) as client:
        models = client.get("/api/v1/models").json()["models"]
        answers = {
            path: client.post(path, json={"instances": ROWS}).json()["predictions"]
            for path in ("/api/v1/models/scores/predict", "/api/v1/models/scores/versions/2/predict")
        }
        jobs = client.get("/api/v1/jobs").json()["jobs"]
        results = {job["id"]: client.get(f"/api/v1/jobs/{job['id']}/result").json() for job in jobs}
    return {
        "models": {m["name"]: (m["active_version"], [v["sha256"] for v in m["versions"]]) for m in models},
        "answers": answers,
        "jobs": {job["id"]: (job["status"], job["model"], job["version"]) for job in jobs},
        "results": results,
    }


def test_a_fleet_moves_into_shared_stores_and_serves_what_it_had(
    tmp_path: Path, postgres: str, s3: S3Settings
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = start_fleet(tmp_path / "one", nodes=1, extra_args=("--no-example",))
    try:
        for seed in (1, 2, 3):
            assert one.deploy("scores", _model(seed)).status_code == 201
        rolled = httpx.post(f"{one.url}/api/v1/models/scores/rollback", headers=one.auth, timeout=60)
        assert rolled.status_code == 200 and rolled.json()["active_version"] == "2"
        assert one.deploy("other", _model(4)).status_code == 201
        for model in ("scores", "other"):
            submitted = httpx.post(f"{one.url}/api/v1/jobs", json={"model": model, "instances": ROWS},
                                   headers=one.auth, timeout=30)  # fmt: skip
            assert submitted.status_code == 202, submitted.text
            assert one.finished_job(submitted.json()["id"])["status"] == "succeeded"
        before = _state(one)
    finally:
        assert one.stop() == 0, one.log()

    shared = _shared_lines(postgres, s3, tmp_path)
    env_file = tmp_path / "migrate.env"
    env_file.write_text(one.env_file.read_text() + shared)
    migrate = [sys.executable, "-m", "deploy.cli", "--env-file", str(env_file),
               "--data-dir", str(one.data_dir), "migrate"]  # fmt: skip
    moved = subprocess.run(migrate, capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    print(moved.stdout)
    assert moved.returncode == 0, moved.stderr
    assert "repository: 4 versions copied" in moved.stdout
    again = subprocess.run(migrate, capture_output=True, text=True, cwd=REPOSITORY, timeout=120)
    assert again.returncode == 0 and "repository: 0 versions copied" in again.stdout, again.stderr

    two = start_fleet(tmp_path / "two", nodes=1, extra_args=("--no-example",), env_lines=shared)
    try:
        after = _state(two)
        assert after == before
        assert not (two.data_dir / "repository" / "models").exists() or not any(
            (two.data_dir / "repository" / "models").iterdir()
        )  # served from the shared stores, not from a folder of its own
        assert two.deploy("scores", _model(5)).json()["version"] == "4"  # numbering goes on
    finally:
        assert two.stop() == 0, two.log()
