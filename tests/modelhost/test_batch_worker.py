"""A node's batch job partitions run in its batch worker process: at the lowest CPU priority, in a
session of its own, resting while the node serves online traffic; a worker that dies answers a
retryable refusal, and the next partition gets a new one."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from modelhost.batch_process import ONLINE_DUTY, ONLINE_RECENT_S, Pace
from tests.in_process import AUTH, InProcessFleet, in_process_fleet

pytestmark = pytest.mark.anyio


def _workers() -> set[int]:
    """This test process's batch workers (multiprocessing's spawned children, not its tracker)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != os.getpid():
                continue
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if b"spawn_main" in command:
            found.add(int(stat.parent.name))
    return found


async def _deployed(fleet: InProcessFleet, rows: int) -> dict[str, Any]:
    features = pd.DataFrame({"a": [0.0, 1.0, 0.5, 0.1], "b": [1.0, 0.0, 0.2, 0.9]})
    model = LogisticRegression().fit(features, [0, 1, 1, 0])
    data = fleet.directory / "data"
    data.mkdir(exist_ok=True)
    (data / "rows.jsonl").write_bytes(b"".join(b'{"a": %d, "b": 0.5}\n' % (i % 7) for i in range(rows)))
    return await fleet.deploy("scores", sio.dumps(model), runtime="sklearn")


def _call(manifest: dict[str, Any], end: int, partition: int = 0, chunk_rows: int = 2048) -> dict[str, Any]:
    return {
        "job_id": "job-1", "partition": partition, "model": "scores", "version": manifest["version"],
        "sha256": manifest["sha256"], "input": "rows.jsonl", "format": "jsonl", "start": 0, "end": end,
        "output_part": f"out/part-{partition}.jsonl", "errors_part": f"out/_errors/part-{partition}.jsonl",
        "chunk_rows": chunk_rows,
    }  # fmt: skip


async def _long_partition(
    fleet: InProcessFleet,
) -> tuple[dict[str, Any], int, asyncio.Future[httpx.Response], int]:
    """A partition of one row a chunk under way (seconds of work, far longer than it takes to see
    its worker start): the model's manifest, the input's size, the call, and the worker's pid."""
    before = _workers()
    manifest = await _deployed(fleet, 20_000)
    end = (fleet.directory / "data" / "rows.jsonl").stat().st_size
    node = fleet.nodes["modelhost-1"]
    running = asyncio.ensure_future(
        node.post("/internal/v1/partitions", json=_call(manifest, end, chunk_rows=1), headers=AUTH)
    )
    while not (started := _workers() - before):
        assert not running.done(), running.result().text
        await asyncio.sleep(0.01)
    (worker,) = started
    return manifest, end, running, worker


async def test_partitions_run_in_a_process_of_the_lowest_priority_in_a_session_of_its_own(
    tmp_path: Path,
) -> None:
    before = _workers()
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        manifest = await _deployed(fleet, 100)
        end = (tmp_path / "data" / "rows.jsonl").stat().st_size
        answer = await fleet.nodes["modelhost-1"].post(
            "/internal/v1/partitions", json=_call(manifest, end), headers=AUTH
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == 100
        (worker,) = _workers() - before
        threads = [int(t.name) for t in Path(f"/proc/{worker}/task").iterdir()]
        assert len(threads) > 1  # numpy's and the pool's threads besides the main one
        assert all(os.sched_getscheduler(t) == os.SCHED_IDLE for t in threads)
        assert all(os.getpriority(os.PRIO_PROCESS, t) == 19 for t in threads)
        assert Path(f"/proc/{worker}/oom_score_adj").read_text().strip() == "1000"
        assert os.getsid(worker) == worker != os.getsid(0)
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the node itself is as it was
        assert os.getpriority(os.PRIO_PROCESS, 0) == 0
        # The node counted the worker's predictions in its own metrics.
        metrics = (await fleet.nodes["modelhost-1"].get("/metrics")).text
        counted = 'modelhost_predicted_rows_total{model="scores",node="modelhost-1",version="1"} 100.0'
        assert counted in metrics


async def test_an_online_prediction_is_seen_by_the_worker(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await _deployed(fleet, 1)
        worker = fleet.node_apps["modelhost-1"].state.batch_worker
        assert worker.online_at == float("-inf")
        answer = await fleet.gateway.post(
            "/api/v1/models/scores/predict", json={"records": [{"a": 0.1, "b": 0.2}]}, headers=AUTH
        )
        assert answer.status_code == 200, answer.text
        assert asyncio.get_running_loop().time() - worker.online_at < 60  # both time.monotonic


def test_pace_rests_while_online_traffic_is_served_and_not_otherwise() -> None:
    now, cpu = [100.0], [5.0]
    slept: list[float] = []
    online_at = [-1e9]
    pace = Pace(lambda: online_at[0], clock=lambda: now[0], cpu_clock=lambda: cpu[0], sleep=slept.append)
    cpu[0] += 0.010  # a chunk's work, no online traffic: no rest
    pace()
    assert slept == []
    online_at[0] = now[0] - ONLINE_RECENT_S / 2
    cpu[0] += 0.010  # a chunk's work while online traffic is served: rests so it works ONLINE_DUTY
    now[0] += 0.050  # of which it waited 0.040 for a core: waiting is not work
    pace()
    assert slept == [pytest.approx(0.010 * (1 - ONLINE_DUTY) / ONLINE_DUTY)]
    now[0] += ONLINE_RECENT_S  # online traffic stopped a while ago
    pace()
    assert len(slept) == 1


async def test_a_worker_killed_during_a_partition_is_a_retryable_refusal_and_the_next_gets_a_new_one(
    tmp_path: Path,
) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        manifest, end, running, first = await _long_partition(fleet)
        node = fleet.nodes["modelhost-1"]
        os.kill(first, signal.SIGKILL)
        answer = await running
        assert answer.status_code == 424, answer.text
        body = orjson.loads(answer.content)
        assert body["retry"] is True and "batch worker process died" in body["error"]
        assert not (tmp_path / "data" / "out" / "part-0.jsonl").exists()

        again = await node.post("/internal/v1/partitions", json=_call(manifest, end, 1), headers=AUTH)
        assert again.status_code == 200, again.text
        assert again.json()["rows"] == 20_000
        assert _workers() - {first}  # a new worker answered it


async def test_an_artifact_gone_from_the_cache_while_loaded_is_fetched_again(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        manifest = await _deployed(fleet, 50)
        (cached,) = tmp_path.rglob(manifest["sha256"])  # the node serves it from memory meanwhile
        cached.unlink()
        end = (tmp_path / "data" / "rows.jsonl").stat().st_size
        answer = await fleet.nodes["modelhost-1"].post(
            "/internal/v1/partitions", json=_call(manifest, end), headers=AUTH
        )
        assert answer.status_code == 200, answer.text
        assert cached.exists()


async def test_an_abandoned_partition_stops_its_worker_and_the_next_gets_a_new_one(tmp_path: Path) -> None:
    """The gateway gave up on a partition (its timeout, or a cancelled job): the worker does not go
    on computing it for nobody, holding up the node's next partitions."""
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        manifest, end, running, first = await _long_partition(fleet)
        node = fleet.nodes["modelhost-1"]
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        for _ in range(500):  # killed at once; reaped by its pool's thread
            if first not in _workers():
                break
            await asyncio.sleep(0.01)
        assert first not in _workers()
        again = await node.post("/internal/v1/partitions", json=_call(manifest, end, 1), headers=AUTH)
        assert again.status_code == 200, again.text
        assert fleet.node_apps["modelhost-1"].state.batch_worker.running == 0
