"""The access log keeps each request's line and writes them together, in the shape of every other
log line, and only while its logger is at INFO."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

import pytest

from wire.access_log import AccessLog, access_log

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
LINE = re.compile(STAMP + r' INFO modelfleet\.access: "POST /p/(\d)" 200 1\.50ms request_id=r\1\n')


@pytest.fixture(autouse=True)
def at_info() -> Iterator[None]:
    """As the services' logging config sets it."""
    level = access_log.level
    access_log.setLevel(logging.INFO)
    yield
    access_log.setLevel(level)


def test_lines_wait_for_the_interval_then_go_in_one_write(capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> tuple[str, str]:
        log = AccessLog(interval_s=0.2)
        for i in range(3):
            log.add("POST", f"/p/{i}", 200, 0.0015, f"r{i}")
        before = capsys.readouterr().err
        for _ in range(100):  # bounded: 5 s at most
            await asyncio.sleep(0.05)
            if after := capsys.readouterr().err:
                return before, after
        return before, ""

    before, after = asyncio.run(scenario())
    assert before == ""
    assert [m.group(1) for m in LINE.finditer(after)] == ["0", "1", "2"]
    assert "".join(m.group(0) for m in LINE.finditer(after)) == after


def test_a_full_batch_is_written_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    async def scenario() -> str:
        log = AccessLog(interval_s=60, capacity=2)
        log.add("POST", "/p/1", 200, 0.0015, "r1")
        log.add("POST", "/p/2", 200, 0.0015, "r2")
        return capsys.readouterr().err

    assert len(LINE.findall(asyncio.run(scenario()))) == 2


def test_nothing_is_kept_when_the_logger_is_above_info(capsys: pytest.CaptureFixture[str]) -> None:
    access_log.setLevel(logging.WARNING)
    log = AccessLog(interval_s=60, capacity=1)
    log.add("POST", "/p/1", 200, 0.0015, "r1")
    log.flush()
    assert capsys.readouterr().err == ""


def test_lines_left_by_a_loop_that_ended_go_with_the_next_loops_flush(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = AccessLog(interval_s=0.05)

    async def first() -> None:
        log.add("POST", "/p/1", 200, 0.0015, "r1")  # its flush was due on this loop, which ends now

    async def second() -> str:
        log.add("POST", "/p/2", 200, 0.0015, "r2")
        for _ in range(100):  # bounded: 5 s at most
            await asyncio.sleep(0.05)
            if written := capsys.readouterr().err:
                return written
        return ""

    asyncio.run(first())
    assert [m.group(1) for m in LINE.finditer(asyncio.run(second()))] == ["1", "2"]
