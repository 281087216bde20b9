"""A node that dies (SIGKILL) or is stopped (SIGTERM) under concurrent load fails no request.

SIGTERM: uvicorn stops accepting connections, closes its idle keep-alive connections, finishes the
requests in flight and exits within --timeout-graceful-shutdown; nginx retries a prediction that was
refused or cut on that node once on another node. SIGKILL: nginx's retry alone. Either way the node
view shows it down at once, and the launcher starts it again: it rejoins with the active models.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from deploy.ephemeral_fleet import RunningFleet, wait_until
from deploy.serve_command import UVICORN_GRACEFUL_S
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
# The node goes once 500 predictions were sent; the load goes on until 500 more were sent after it
# was gone (bounded at 100,000 and 120 s), whatever the machine's speed.
AT, AFTER, CONCURRENCY = 500, 500, 32

# The node view's probe has a 1 s status timeout; 5 s leaves a loaded machine room.
SEEN_DOWN_WITHIN_S = 5.0


def _gone(pid: int) -> bool:
    """Exited: reaped, or a zombie the launcher has not reaped yet (it polls every 0.25 s)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_node_lost_under_load_fails_no_request(fleet: RunningFleet, stop_signal: signal.Signals) -> None:
    victim = "modelhost-2"
    # Stand alone: every node serves iris before the load starts (an earlier test may have restarted one).
    assert wait_until(lambda: fleet.serves(victim, "iris"), timeout_s=30, interval_s=0.25)
    pid = fleet.pid(victim)
    url = f"{fleet.url}/api/v1/models/iris/predict"
    # ... and nginx sends it requests again: a node that failed there is skipped for its fail_timeout.
    assert wait_until(
        lambda: httpx.post(url, json=ROW, timeout=10).json().get("node") == victim,
        timeout_s=30,
        interval_s=0.05,
    )
    with LoadLoop(url, ROW, max_requests=100_000, max_seconds=120, concurrency=CONCURRENCY) as load:
        assert wait_until(lambda: load.sent >= AT, timeout_s=60, interval_s=0.01)
        before = load.mark()
        signalled_at, sent_at_signal = time.monotonic(), load.sent
        os.kill(pid, stop_signal)
        assert wait_until(lambda: _gone(pid), timeout_s=UVICORN_GRACEFUL_S + 5, interval_s=0.01)
        exit_s = time.monotonic() - signalled_at
        # The node view probes each node when asked: a dead one refuses the connection, so the view
        # says "not live" at its first probe (polled from the exit on, while the load runs).
        seen_down = wait_until(lambda: fleet.node_view(victim)["live"] is False, SEEN_DOWN_WITHIN_S, 0.05)
        at_exit = load.sent
        assert wait_until(lambda: load.sent >= at_exit + AFTER, timeout_s=90, interval_s=0.01)
    answers = load.snapshot()
    after_exit = [a for a in answers if a.sent_at > signalled_at + exit_s]
    print(
        f"{stop_signal.name} of {victim} after {sent_at_signal} of {load.sent} predictions "
        f"at c={CONCURRENCY}: "
        f"{load.report()}; it served {before[victim]} before; gone {exit_s:.2f}s after the signal; "
        f"{len(after_exit)} predictions sent after it was gone"
    )
    assert load.failures == [], load.failures[:5]
    assert seen_down, f"{victim} still shown live {SEEN_DOWN_WITHIN_S}s after it exited"
    assert len(answers) == load.sent
    assert before[victim] > 0  # it was in rotation when it was lost
    assert after_exit, "the load ended before the node was gone"
    # SIGTERM: uvicorn finishes in-flight requests within its grace period, then exits. The wait is
    # polled every 10 ms from the signal, so a process still there after the grace period fails this.
    assert exit_s <= UVICORN_GRACEFUL_S
    # The launcher starts the node again; it loads the active models by itself and rejoins.
    assert wait_until(
        lambda: fleet.pid(victim) != pid and fleet.serves(victim, "iris"), timeout_s=30, interval_s=0.25
    )
