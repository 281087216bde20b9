"""The launcher's size-rotated logs: every file within its bound, whole lines, nothing lost but the oldest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.log_files import RotatingLog, log_pipe


def _lines(count: int, start: int = 0) -> list[bytes]:
    return [f"line {i} {'x' * (i % 37)}\n".encode() for i in range(start, start + count)]


def _kept(log: RotatingLog) -> bytes:
    """Every file's content, oldest first."""
    return b"".join(path.read_bytes() for path in reversed(log.files()))


def test_rotation_keeps_every_file_within_its_bound_and_the_newest_lines_whole(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "svc.log", max_bytes=1000, max_files=3)
    lines = _lines(2000)
    for line in lines:
        log.write(line)
    log.close()
    files = log.files()
    assert [p.name for p in files] == ["svc.log", "svc.log.1", "svc.log.2"]
    assert not (tmp_path / "svc.log.3").exists()
    assert all(p.stat().st_size <= 1000 for p in files)
    kept = _kept(log)
    assert b"".join(lines).endswith(kept)  # the newest lines, in order, none lost between files
    assert all(p.read_bytes().endswith(b"\n") for p in files[1:])  # rotated at line ends
    assert len(kept) > 2000  # the rotated files are full, not nearly empty


def test_chunks_of_many_lines_split_at_a_line_end(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "svc.log", max_bytes=500, max_files=2)
    stream = b"".join(_lines(400))
    for offset in range(0, len(stream), 4096):  # what a pipe read hands over
        log.write(stream[offset : offset + 4096])
    log.close()
    assert all(p.stat().st_size <= 500 for p in log.files())
    assert stream.endswith(_kept(log))
    assert (tmp_path / "svc.log.1").read_bytes().endswith(b"\n")


def test_one_file_starts_again_when_full_and_a_giant_line_is_split(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "svc.log", max_bytes=100, max_files=1)
    log.write(b"a" * 250 + b"\n")
    log.close()
    assert log.files() == [tmp_path / "svc.log"]
    assert (tmp_path / "svc.log").read_bytes() == b"a" * 50 + b"\n"


def test_an_existing_oversized_file_rotates_on_the_first_write(tmp_path: Path) -> None:
    (tmp_path / "svc.log").write_bytes(b"old\n" * 100)
    log = RotatingLog(tmp_path / "svc.log", max_bytes=100, max_files=2)
    log.write(b"new\n")
    log.close()
    assert (tmp_path / "svc.log").read_bytes() == b"new\n"
    assert (tmp_path / "svc.log.1").read_bytes() == b"old\n" * 100  # kept as it was, not cut


def test_a_full_disk_drops_lines_instead_of_failing(tmp_path: Path) -> None:
    log = RotatingLog(Path("/dev/full"), max_bytes=10**9, max_files=1)
    log.write(b"lost\n")
    log.write(b"lost too\n")
    log.close()
    assert log.dropped_bytes == len(b"lost\n") + len(b"lost too\n")


def test_refuses_bounds_below_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        RotatingLog(tmp_path / "svc.log", max_bytes=0, max_files=1)
    with pytest.raises(ValueError):
        RotatingLog(tmp_path / "svc.log", max_bytes=10, max_files=0)


def test_a_childs_output_reaches_its_rotated_log_through_the_pipe(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "child.log", max_bytes=4096, max_files=3)
    write_end, copier = log_pipe(log)
    script = "import sys\nfor i in range(5000): print('out', i); print('err', i, file=sys.stderr)"
    try:
        child = subprocess.Popen([sys.executable, "-c", script], stdout=write_end, stderr=subprocess.STDOUT)
    finally:
        os.close(write_end)
    assert child.wait(30) == 0
    copier.join(10)
    assert not copier.is_alive()  # the copier ends when the child's side closes
    log.close()
    assert all(p.stat().st_size <= 4096 for p in log.files())
    kept = _kept(log).decode().splitlines()
    assert {"out 4999", "err 4999"} <= set(kept)  # the last lines of both streams
    assert all(line.split()[0] in ("out", "err") for line in kept)
