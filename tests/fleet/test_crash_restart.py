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

from tests.harness import RunningFleet, start_fleet, wait_until

pytestmark = pytest.mark.fleet


def _kill_everything(fleet: RunningFleet, first: int | None = None) -> None:
    """SIGKILL, by PID: `first` (the process to catch in the act), the launcher (so it restarts
    nothing; it would wait a second first), then every child it started."""
    children = fleet.child_pids()
    if first is not None:
        os.kill(first, signal.SIGKILL)
    os.kill(fleet.process.pid, signal.SIGKILL)
    fleet.process.wait()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
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

        # A kill right after a delete was sent: the model is all there or all gone.
        deleting = threading.Thread(
            target=lambda: _quietly(httpx.delete, f"{fleet.url}/api/v1/models/gone", headers=fleet.auth)
        )
        deleting.start()
        time.sleep(0.02)
        _kill_everything(fleet)
        deleting.join(timeout=30)

        fleet = start_fleet(tmp_path, nodes=1)
        after_delete = _state(fleet)
        assert after_delete.get("gone") in (None, before["gone"]), after_delete
        assert {k: v for k, v in after_delete.items() if k != "gone"} == {
            k: v for k, v in before.items() if k != "gone"
        }
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
