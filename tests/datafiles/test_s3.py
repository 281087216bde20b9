"""S3 locations against SeaweedFS, a real S3-compatible server (a process on loopback), through its
endpoint URL only, exactly as against AWS S3 or MinIO: ranged reads plan and read partitions like
local files."""

from __future__ import annotations

from pathlib import Path

import pytest

from datafiles.locations import S3Settings, Storage
from datafiles.partitions import plan_lines, read_lines

pytestmark = pytest.mark.fleet  # a real server process


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
