"""SIGKILL of the whole fleet in the middle of a model write, then `modelfleet up` again on the same
data: the versions and active pointers are as before, staging/ is empty, nothing is half there, and
the example model is not deployed a second time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import skops.io as sio
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from deploy.ephemeral_fleet import RunningFleet, start_fleet, wait_until

pytestmark = pytest.mark.fleet


def _kill_everything(fleet: RunningFleet, first: int | None = None) -> None:
    """SIGKILL, by PID: `first` (the process to catch in the act), the launcher (so it restarts
    nothing; it would wait a second first), then every child it started."""
    children = fleet.child_pids()
    if first is not None:
        os.kill(first, signal.SIGKILL)
    os.kill(fleet.process.pid, signal.SIGKILL)
    fleet.process.wait()
    for pid in children:  # each child leads a process group of its own: its workers go with it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), timeout_s=10)


def _state(fleet: RunningFleet) -> dict[str, Any]:
    models = httpx.get(f"{fleet.url}/api/v1/models", headers=fleet.auth, timeout=30).json()["models"]
    return {m["name"]: (m["active_version"], [v["version"] for v in m["versions"]]) for m in models}


def _litter(data_dir: Path) -> list[str]:
    repository = data_dir / "repository"
    return [str(p.relative_to(repository)) for p in repository.rglob(".*")] + [
        p.name for p in (repository / "staging").iterdir()
    ]


def _large_model() -> bytes:
    """About 190 MB (a scaler over 8 million features): its write takes long enough to be cut."""
    features = np.random.default_rng(0).normal(size=(2, 8_000_000)).astype(np.float32)
    model = Pipeline([("scale", StandardScaler()), ("classify", DummyClassifier())]).fit(features, [0, 1])
    return sio.dumps(model)


def test_a_kill_during_an_upload_and_during_a_delete_leaves_the_repository_as_before(
    tmp_path: Path, pipeline_skops: bytes
) -> None:
    fleet = start_fleet(tmp_path, nodes=1)
    try:
        for _ in range(2):
            assert fleet.deploy("keep", pipeline_skops).status_code == 201
        assert fleet.deploy("gone", pipeline_skops).status_code == 201
        before = _state(fleet)
        assert before["iris"] == ("1", ["1"]) and before["keep"] == ("2", ["1", "2"])

        # A kill while the repository writes a large upload into staging/. The upload is another
        # process (curl), so nothing in this one delays noticing the write and killing the writer.
        staging = fleet.data_dir / "repository" / "staging"
        (tmp_path / "big.skops").write_bytes(_large_model())
        upload = subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {fleet.token}",
             "-F", "name=big", "-F", "file=@big.skops", f"{fleet.url}/api/v1/models"],
            cwd=tmp_path,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while not os.listdir(staging):
            assert time.monotonic() < deadline and upload.poll() is None, "the upload never reached staging/"
            time.sleep(0.0005)
        _kill_everything(fleet, first=fleet.pid("inferrer"))
        upload.wait(timeout=60)
        assert os.listdir(staging), "the kill came too late to leave a half write"

        fleet = start_fleet(tmp_path, nodes=1)
        after_upload = _state(fleet)
        assert after_upload == before, (before, after_upload)
        assert _litter(fleet.data_dir) == []
        assert "already deployed" in fleet.log()  # `up` found the example model and left it

        # A kill in the middle of a delete, caught once the model's folder has moved to staging/
        # (the delete's one rename): from then on the model is gone for good, whatever the kill cut
        # short (the folder's removal, the index, the nodes' unload). Files beside the version make
        # its removal take long enough to be caught in.
        ballast = fleet.data_dir / "repository" / "models" / "gone" / "1"
        for i in range(5000):
            (ballast / f"ballast-{i}").touch()
        deleting = threading.Thread(
            target=lambda: _quietly(httpx.delete, f"{fleet.url}/api/v1/models/gone", headers=fleet.auth)
        )
        deleting.start()
        deadline = time.monotonic() + 60
        while not any(p.name.startswith("deleted-") for p in staging.iterdir()):
            assert time.monotonic() < deadline and deleting.is_alive(), "the delete never reached staging/"
            time.sleep(0.0005)
        _kill_everything(fleet, first=fleet.pid("inferrer"))
        deleting.join(timeout=30)
        assert [p for p in staging.iterdir() if p.name.startswith("deleted-")], "the kill came too late"

        fleet = start_fleet(tmp_path, nodes=1)
        after_delete = _state(fleet)
        assert after_delete == {k: v for k, v in before.items() if k != "gone"}, after_delete
        assert _litter(fleet.data_dir) == []
        print(
            f"before: {before}; after the upload kill: {after_upload}; after the delete kill: {after_delete}"
        )
    finally:
        if fleet.process.poll() is None:
            assert fleet.stop() == 0, fleet.log()


def _quietly(call: Any, *args: Any, **kwargs: Any) -> None:
    """A request whose server is killed under it: any outcome is fine, the repository is checked."""
    with contextlib.suppress(httpx.HTTPError):
        call(*args, **kwargs)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_a_killed_inferrer_with_two_workers_comes_back_without_orphans(two_gateways: RunningFleet) -> None:
    """uvicorn's worker processes outlive a SIGKILLed parent and keep its port: the launcher kills
    what is left of the dead child's process group before it starts the inferrer again."""
    fleet = two_gateways
    restarts_before = fleet.log().count("inferrer exited with code")
    pid = fleet.pid("inferrer")
    workers = _children(pid)
    assert len(workers) >= 2, workers
    os.kill(pid, signal.SIGKILL)

    def serving_again() -> bool:
        if fleet.pid("inferrer") == pid:
            return False
        with contextlib.suppress(httpx.HTTPError):
            predict = httpx.post(
                f"{fleet.url}/api/v1/models/iris/predict", json={"instances": [[1, 2, 3, 4]]}
            )
            return predict.status_code == 200
        return False

    assert wait_until(serving_again, timeout_s=60, interval_s=0.25), fleet.log()[-3000:]
    assert not any(Path(f"/proc/{worker}").exists() for worker in workers), "old workers still run"
    restarts = fleet.log().count("inferrer exited with code") - restarts_before
    assert restarts == 1, fleet.log()[-3000:]  # one restart, not a loop against a held port
    print(f"inferrer {pid} SIGKILLed, its workers {workers}: back as {fleet.pid('inferrer')}, 1 restart")
