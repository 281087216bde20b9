"""Bounded logs under load: 20,000 predictions through the gateway, nginx and the nodes, each of
which writes an access line, with small LOG_MAX_BYTES / LOG_MAX_FILES. While the load runs and after
it, every service's log and its rotated files stay within the bound, and the newest lines are kept."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench.loadgen import run_wrk_counted
from deploy.ephemeral_fleet import RunningFleet, start_fleet

pytestmark = pytest.mark.fleet

REQUESTS = 20_000  # each service writes ~20 times MAX_BYTES of access lines: many rotations
MAX_BYTES = 64 * 1024
MAX_FILES = 2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    running = start_fleet(
        Path(tmp_path_factory.mktemp("logs")),
        nodes=2,
        env_lines=f"LOG_MAX_BYTES={MAX_BYTES}\nLOG_MAX_FILES={MAX_FILES}\n",
    )
    yield running
    assert running.stop() == 0, running.log()


def _log_files(logs: Path) -> dict[str, list[Path]]:
    services: dict[str, list[Path]] = {}
    for path in logs.iterdir():
        services.setdefault(path.name.split(".log")[0], []).append(path)
    return services


def _over_bound(logs: Path) -> list[str]:
    problems = []
    for service, files in _log_files(logs).items():
        if len(files) > MAX_FILES:
            problems.append(f"{service}: {sorted(p.name for p in files)}")
        for path in files:
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # renamed between the listing and the stat
                continue
            if size > MAX_BYTES:
                problems.append(f"{path.name}: {size} bytes")
    return problems


def test_every_log_stays_within_its_bound_under_20000_requests(fleet: RunningFleet) -> None:
    logs = fleet.data_dir / "run" / "logs"
    problems: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            problems.extend(_over_bound(logs))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_wrk_counted(
            f"{fleet.url}/api/v1/models/iris/predict",
            orjson.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}),
            concurrency=32,
            max_requests=REQUESTS,
            timeout_s=400,
        )
    finally:
        done.set()
        watcher.join()
    assert result.answered == REQUESTS, result
    assert result.failed == 0, result
    problems += _over_bound(logs)
    assert not problems, problems[:20]

    services = _log_files(logs)
    for service in ("inferrer", "nginx", "modelhost-1", "modelhost-2"):
        assert len(services[service]) == MAX_FILES, services  # each rotated: the load outgrew one file
    newest = (logs / "inferrer.log").read_text().splitlines()
    assert any('"POST /api/v1/models/iris/predict" 200' in line for line in newest)
    nginx = (logs / "nginx.log").read_text().splitlines()
    assert any('"POST /api/v1/models/iris/predict HTTP/1.1" 200' in line for line in nginx), nginx[-3:]
