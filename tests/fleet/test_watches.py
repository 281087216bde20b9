"""Watched folders and prefixes on a real fleet (3 nodes, nginx, two gateway processes sharing a real
PostgreSQL job store, real files, a real S3-compatible server (SeaweedFS)): 20 files dropped at once
(CSV and parquet, 1,000 to 50,000 rows, one corrupt), locally and on S3; the inferrer SIGKILLed
while files are processed; writes that fail and are retried; a file copied in slowly."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from datafiles.locations import S3Settings, Storage
from deploy.ephemeral_fleet import RunningFleet, start_fleet, wait_until
from testbed.postgres_server import postgres_server
from testbed.s3_server import env_lines

pytestmark = pytest.mark.fleet

FEATURES = ["f0", "f1", "f2", "f3"]
SIZES = np.linspace(1_000, 50_000, 19).astype(int).tolist()  # 19 good files, and one corrupt


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, s3: S3Settings) -> Iterator[RunningFleet]:
    """Two gateway processes sharing a real PostgreSQL job store: each file is claimed by one."""
    with postgres_server() as database:
        running = start_fleet(
            Path(tmp_path_factory.mktemp("watches")),
            nodes=3,
            extra_args=("--no-example", "--inferrer-workers", "2"),
            # Listings every second (S3), files taken once unchanged for a second, a dead gateway's
            # claims lapsing after 3 s.
            env={
                "INFERRER_WATCH_INTERVAL_S": "1",
                "INFERRER_WATCH_SETTLE_S": "1",
                "INFERRER_JOBS_LEASE_S": "3",
                "INFERRER_JOBS_DB_URL": database,
            },
            env_lines=env_lines(s3),
        )
        yield running
        assert running.stop() == 0, running.log()


@pytest.fixture(scope="module")
def model(fleet: RunningFleet) -> LogisticRegression:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(2000, len(FEATURES))), columns=FEATURES)
    fitted = LogisticRegression().fit(frame, (frame["f0"] - frame["f3"] > 0).astype(int))
    assert fleet.deploy("scores", sio.dumps(fitted)).status_code == 201
    return fitted


@pytest.fixture(scope="module")
def storage(fleet: RunningFleet, s3: S3Settings) -> Storage:
    return Storage(fleet.data_dir / "data", s3)


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))).round(6), columns=FEATURES)
    return frame.assign(id=range(n))[["id", *FEATURES]]


def _file_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out, row_group_size=10_000)
    return out.getvalue()


def _batch(prefix: str) -> dict[str, pd.DataFrame | None]:
    """20 files: CSV and parquet by turns, 1,000 to 50,000 rows; None for the corrupt one."""
    files: dict[str, pd.DataFrame | None] = {
        f"{prefix}-{i:02d}.{'csv' if i % 2 else 'parquet'}": _rows(n, seed=i) for i, n in enumerate(SIZES)
    }
    files[f"{prefix}-corrupt.parquet"] = None
    return files


def _create(fleet: RunningFleet, **body: Any) -> dict[str, Any]:
    answer = httpx.post(f"{fleet.url}/api/v1/watches", json={"model": "scores", **body}, headers=fleet.auth)
    assert answer.status_code == 201, answer.text
    view: dict[str, Any] = answer.json()
    return view


def _files(fleet: RunningFleet, name: str) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{fleet.url}/api/v1/watches/{name}?limit=1000", headers=fleet.auth, timeout=10)
    assert answer.status_code == 200, answer.text
    return {f["name"]: f for f in answer.json()["files"]}


def _until(
    fleet: RunningFleet, name: str, done: Callable[[dict[str, dict[str, Any]]], bool], timeout_s: float = 180
):
    """The watch's files once `done` holds (the inferrer may be restarting meanwhile)."""
    deadline = time.monotonic() + timeout_s
    files: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        try:
            files = _files(fleet, name)
            if done(files):
                return files
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"watch {name}: {files}\n{fleet.log()[-3000:]}")


def _settled(count: int) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda files: sum(f["state"] in ("done", "failed") for f in files.values()) >= count


def _check_outputs(
    files: dict[str, dict[str, Any]],
    batch: dict[str, pd.DataFrame | None],
    model: LogisticRegression,
    read: Callable[[str], bytes],
    listed: list[str],
    output: str,
) -> None:
    """Every good file done with one output of every row's prediction; the corrupt one failed."""
    assert set(files) == set(batch)
    for name, frame in batch.items():
        if frame is None:
            assert files[name]["state"] == "failed", files[name]
            assert "not a parquet file" in files[name]["error"]
            continue
        assert files[name]["state"] == "done", files[name]
        stem, suffix = name.rsplit(".", 1)
        ext = "csv" if suffix == "csv" else "jsonl"  # the input's format; parquet gives JSON lines
        assert files[name]["output_location"] == f"{output}/model=scores/version=1/{stem}.{ext}"
        assert files[name]["rows"] == len(frame) and files[name]["attempts"] == 1
        written = io.BytesIO(read(files[name]["output_location"]))
        scored = pd.read_csv(written) if ext == "csv" else pd.read_json(written, lines=True)
        assert scored["id"].tolist() == list(range(len(frame)))
        assert scored["prediction"].tolist() == model.predict(frame[FEATURES]).tolist()
    good = sorted(f["output_location"].rsplit("/", 1)[1] for f in files.values() if f["state"] == "done")
    assert sorted(listed) == good  # one output per file, nothing else


def test_twenty_files_dropped_into_a_folder_each_give_one_verified_output(
    fleet: RunningFleet, model: LogisticRegression
) -> None:
    view = _create(fleet, name="local", input="incoming", pattern="batch-*", output_location="scored")
    batch = _batch("batch")
    incoming = fleet.data_dir / "data" / "incoming"
    started = time.monotonic()
    for name, frame in batch.items():
        (incoming / name).write_bytes(b"PAR1 garbage" if frame is None else _file_bytes(frame, name[-3:]))
    files = _until(fleet, "local", _settled(len(batch)))
    seconds = time.monotonic() - started
    out = fleet.data_dir / "data" / "scored" / "model=scores" / "version=1"
    _check_outputs(files, batch, model, lambda o: (fleet.data_dir / "data" / o).read_bytes(),
                   [p.name for p in out.iterdir()], "scored")  # fmt: skip
    assert not list((fleet.data_dir / "data" / "scored" / "_staging").glob("*"))  # parts joined, gone
    watched = httpx.get(f"{fleet.url}/api/v1/watches/local", headers=fleet.auth).json()
    assert watched["detection"] == "inotify" and view["name"] == "local"
    assert watched["counts"] == {"pending": 0, "running": 0, "done": 19, "failed": 1}
    print(f"20 files ({sum(SIZES)} rows) in a folder: settled in {seconds:.1f}s")


def test_the_same_against_an_s3_prefix(
    fleet: RunningFleet, model: LogisticRegression, storage: Storage
) -> None:
    for bucket in ("drops", "results"):
        storage.filesystem(storage.location(f"s3://{bucket}/x")).mkdir(bucket)
    view = _create(fleet, name="bucket", input="s3://drops/incoming", output_location="s3://results/scored")
    assert view["detection"] == "listing"
    batch = _batch("obj")
    started = time.monotonic()
    for name, frame in batch.items():
        body = b"PAR1 garbage" if frame is None else _file_bytes(frame, name[-3:])
        storage.write_atomic(storage.location(f"s3://drops/incoming/{name}"), body)
    files = _until(fleet, "bucket", _settled(len(batch)))
    seconds = time.monotonic() - started
    out = storage.location("s3://results/scored/model=scores/version=1")
    listed = [p.rsplit("/", 1)[1] for p in storage.filesystem(out).ls(out.path, detail=False)]
    _check_outputs(files, batch, model, lambda o: storage.read_all(storage.location(o)), listed,
                   "s3://results/scored")  # fmt: skip
    # Parts joined, gone: no part is left under the staging prefix (SeaweedFS, unlike AWS S3, lists an
    # emptied prefix as a folder until it cleans empty folders up).
    assert [p for p in storage.filesystem(out).find("results/scored/_staging/") if "/part-" in p] == []
    print(f"20 objects ({sum(SIZES)} rows) under an S3 prefix: settled in {seconds:.1f}s")


def test_a_sigkilled_inferrer_leaves_every_file_done_exactly_once(
    fleet: RunningFleet, model: LogisticRegression
) -> None:
    _create(fleet, name="killed", input="kill-in", output_location="kill-out")
    frames = {f"k{i:02d}.csv": _rows(100_000, seed=100 + i) for i in range(12)}
    for name, frame in frames.items():
        (fleet.data_dir / "data" / "kill-in" / name).write_bytes(_file_bytes(frame, "csv"))
    pid = fleet.pid("inferrer")
    # Killed as soon as the first file is under way.
    at_kill = _until(
        fleet,
        "killed",
        lambda files: any(f["state"] != "pending" for f in files.values()),
    )
    os.kill(pid, signal.SIGKILL)
    undone = 12 - sum(f["state"] == "done" for f in at_kill.values())
    assert undone > 0, "the kill came too late: every file was done"
    # The launcher starts another inferrer; the killed one's workers may answer for a moment yet.
    assert wait_until(lambda: fleet.pid("inferrer") != pid and fleet.is_ready(), timeout_s=60)
    files = _until(fleet, "killed", _settled(12))
    assert all(f["state"] == "done" and f["attempts"] == 1 for f in files.values()), files
    jobs = httpx.get(f"{fleet.url}/api/v1/jobs?limit=1000", headers=fleet.auth).json()["jobs"]
    made = [j["id"] for j in jobs if j["output"] and j["output"]["location"].startswith("kill-out/")]
    assert sorted(made) == sorted(f["job"] for f in files.values())  # one job per file, no more
    out = fleet.data_dir / "data" / "kill-out" / "model=scores" / "version=1"
    # A gateway killed while it wrote an output leaves a temporary file: the output's next write clears it.
    assert sorted(p.name for p in out.iterdir()) == sorted(frames)
    for name, frame in frames.items():
        scored = pd.read_csv(out / name)
        assert scored["id"].tolist() == list(range(len(frame)))
        assert scored["prediction"].tolist() == model.predict(frame[FEATURES]).tolist()
    print(f"inferrer SIGKILLed with {undone}/12 files not done: all done once after the restart")


def test_a_write_that_fails_leaves_the_file_not_done_and_retried(
    fleet: RunningFleet, model: LogisticRegression, storage: Storage
) -> None:
    """The output bucket removed (S3), or the output folder's place taken by a file (local: a
    read-only folder does not stop root): the file is retried, never done, until the write works."""
    frame = _rows(3_000, seed=7)
    storage.filesystem(storage.location("s3://gone-in/x")).mkdir("gone-in")
    storage.filesystem(storage.location("s3://gone-out/x")).mkdir("gone-out")
    _create(
        fleet,
        name="no-bucket",
        input="s3://gone-in/drop",
        output_location="s3://gone-out/scored",
        max_attempts=10,
    )
    _create(fleet, name="no-folder", input="blocked-in", output_location="blocked-out", max_attempts=10)
    storage.filesystem(storage.location("s3://gone-out/x")).rmdir("gone-out")
    (fleet.data_dir / "data" / "blocked-out").write_text("in the way")
    storage.write_atomic(storage.location("s3://gone-in/drop/rows.csv"), _file_bytes(frame, "csv"))
    (fleet.data_dir / "data" / "blocked-in" / "rows.csv").write_bytes(_file_bytes(frame, "csv"))

    def retried(files: dict[str, dict[str, Any]]) -> bool:
        return "rows.csv" in files and files["rows.csv"]["attempts"] >= 2

    for watch in ("no-bucket", "no-folder"):
        failing = _until(fleet, watch, retried, timeout_s=60)["rows.csv"]
        assert failing["state"] in ("pending", "running") and failing["error"], failing
    assert not (fleet.data_dir / "data" / "blocked-out").is_dir()
    storage.filesystem(storage.location("s3://gone-out/x")).mkdir("gone-out")
    (fleet.data_dir / "data" / "blocked-out").unlink()
    expected = model.predict(frame[FEATURES]).tolist()
    for watch, read in (
        ("no-bucket", lambda o: storage.read_all(storage.location(o))),
        ("no-folder", lambda o: (fleet.data_dir / "data" / o).read_bytes()),
    ):
        done = _until(fleet, watch, lambda files: files["rows.csv"]["state"] == "done", timeout_s=120)[
            "rows.csv"
        ]
        assert done["rows"] == len(frame) and done["error"] is None
        assert pd.read_csv(io.BytesIO(read(done["output_location"])))["prediction"].tolist() == expected
        print(f"{watch}: done after {done['attempts']} attempts")


def test_a_file_copied_in_slowly_is_processed_once_whole(
    fleet: RunningFleet, model: LogisticRegression
) -> None:
    _create(fleet, name="slow", input="slow-in", output_location="slow-out")
    frame = _rows(10_000, seed=9)
    body = _file_bytes(frame, "csv")
    chunks = [body[i : i + len(body) // 10 + 1] for i in range(0, len(body), len(body) // 10 + 1)]
    with (fleet.data_dir / "data" / "slow-in" / "slow.csv").open("wb") as out:
        for chunk in chunks:  # over 3 s, under its final name
            out.write(chunk)
            out.flush()
            time.sleep(0.3)
    assert wait_until(lambda: _settled(1)(_files(fleet, "slow")), timeout_s=60)
    time.sleep(2.5)  # time for a second version to show up, were the file taken twice
    files = _files(fleet, "slow")
    assert list(files) == ["slow.csv"] and files["slow.csv"]["state"] == "done"
    assert files["slow.csv"]["size"] == len(body) and files["slow.csv"]["rows"] == len(frame)
    scored = pd.read_csv(fleet.data_dir / "data" / files["slow.csv"]["output_location"])
    assert scored["id"].tolist() == list(range(len(frame)))
    assert scored["prediction"].tolist() == model.predict(frame[FEATURES]).tolist()
