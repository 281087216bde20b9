"""S3 locations against a real S3-compatible server (moto's, on loopback), through its endpoint URL
only, exactly as against AWS S3 or MinIO: ranged reads plan and read partitions like local files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from datafiles.locations import S3Settings, Storage
from datafiles.partitions import plan_lines, read_lines
from tests.harness import free_ports, wait_until

pytestmark = pytest.mark.fleet  # a real server process


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Settings]:
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{port}", region="eu-central-1", key_id="testing", secret="testing"
    )
    try:
        probe = Storage(Path("."), settings)
        fs = probe.filesystem(probe.location("s3://probe/x"))
        assert wait_until(lambda: _answers(fs), timeout_s=30, interval_s=0.2), "moto_server did not start"
        yield settings
    finally:
        server.terminate()
        server.wait(10)


def _answers(fs: object) -> bool:
    try:
        fs.ls("")  # type: ignore[attr-defined]
        return True
    except Exception:
        return False


def test_a_csv_object_is_planned_and_read_by_ranges(s3: S3Settings, tmp_path: Path) -> None:
    storage = Storage(tmp_path, s3)
    location = storage.location("s3://batch-in/rows/data.csv")
    fs = storage.filesystem(location)
    fs.mkdir("batch-in")
    body = b"id,a,b\n" + b"".join(b"%d,%d.5,%d\n" % (i, i, i * 2) for i in range(5000))
    storage.write_atomic(location, body)
    size = storage.size(location)
    assert storage.read_range(location, 0, 7) == b"id,a,b\n"
    with fs.open(location.path, "rb") as remote:
        plan = plan_lines(remote, size, partition_bytes=8 * 1024, has_header=True)
        lines = [line for r in plan.ranges for _, line in read_lines(remote, r)]
    assert plan.header == b"id,a,b"
    assert len(plan.ranges) >= 8
    assert lines == body.splitlines()[1:]  # every row once, in order
