"""Load from a separate process (wrk) and the CPU each process group used meanwhile."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WRK_BODY")
if os.getenv("WRK_AUTHORIZATION") ~= "" then
  wrk.headers["Authorization"] = os.getenv("WRK_AUTHORIZATION")
end
"""
# wrk runs for a duration; this stops it after a count of answers (one thread: -t1), with a summary.
_LUA_COUNTED = """
local answered, failed, limit = 0, 0, tonumber(os.getenv("WRK_MAX_REQUESTS"))
response = function(status, headers, body)
  answered = answered + 1
  if status >= 400 then failed = failed + 1 end
  if answered >= limit then
    io.write(string.format("answered %d failed %d\\n", answered, failed))
    os.exit(0)
  end
end
"""


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(
    url: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    authorization: str = "",
    prefix: Sequence[str] = (),
) -> LoadResult:
    """One wrk thread (it needs ~0.1 core), `concurrency` kept-alive connections; `authorization`:
    an Authorization header to send (a node's port needs the fleet's token); `prefix`: a command that
    runs wrk elsewhere (`ip netns exec NS`: on a host of testbed/hosts.py)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA)
    env = {**os.environ, "WRK_BODY": body.decode(), "WRK_AUTHORIZATION": authorization}
    try:
        out = subprocess.run(
            [*prefix, "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency",
             "-s", script.name, url],
            capture_output=True, text=True, env=env,
            timeout=seconds + 60,
        ).stdout  # fmt: skip
    finally:
        Path(script.name).unlink()
    return LoadResult(
        rps=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_ms(_find(r"50%\s+([\d.]+\w+)", out)),
        p99_ms=_ms(_find(r"99%\s+([\d.]+\w+)", out)),
        errors=int(_find(r"Non-2xx or 3xx responses: (\d+)", out, "0"))
        + sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)),
        requests=int(_find(r"(\d+) requests in", out, "0")),
    )


@dataclass
class CountedResult:
    answered: int
    failed: int  # answers of status 400 or more
    seconds: float


def run_wrk_counted(
    url: str, body: bytes, concurrency: int, max_requests: int, timeout_s: float
) -> CountedResult:
    """`max_requests` answers from one wrk thread with `concurrency` kept-alive connections; fewer
    (the count wrk saw is lost) when `timeout_s` passes first."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA + _LUA_COUNTED)
    env = {**os.environ, "WRK_BODY": body.decode(), "WRK_MAX_REQUESTS": str(max_requests)}
    started = time.monotonic()
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(timeout_s))}s", "-s", script.name, url],
            capture_output=True, text=True, env=env, timeout=timeout_s + 60,
        ).stdout  # fmt: skip
    finally:
        Path(script.name).unlink()
    seconds = time.monotonic() - started
    counted = re.search(r"answered (\d+) failed (\d+)", out)
    if counted is None:
        return CountedResult(0, 0, seconds)
    return CountedResult(int(counted[1]), int(counted[2]), seconds)


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match:
        return match[1]
    if default is None:
        raise RuntimeError(f"wrk output lacks {pattern!r}:\n{text}")
    return default


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def process_tree(root_pids: list[int]) -> set[int]:
    """These processes and all their descendants (uvicorn's workers, nginx's), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree = set(root_pids)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def process_tree_cpu_s(root_pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in process_tree(root_pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total
