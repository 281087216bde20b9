"""A node killed with SIGKILL under load: seen as down at once, traffic flows on, it rejoins by itself."""

from __future__ import annotations

import os
import signal
import time

import pytest

from deploy.ephemeral_fleet import RunningFleet, wait_until
from tests.load_loop import LoadLoop

pytestmark = pytest.mark.fleet

ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
# The node view probes each node when asked (1 s status timeout): a killed node refuses the
# connection, so the view says "not live" on its first probe. 5 s leaves a loaded machine room.
SEEN_DOWN_WITHIN_S = 5.0


def test_killed_node_is_reported_and_bypassed_then_rejoins(fleet: RunningFleet) -> None:
    victim = "modelhost-2"
    url = f"{fleet.url}/api/v1/models/iris/predict"
    assert wait_until(lambda: fleet.serves(victim, "iris"), timeout_s=30, interval_s=0.25)
    pid = fleet.pid(victim)
    with LoadLoop(url, ROW, max_requests=20_000, max_seconds=90, concurrency=16) as load:
        assert wait_until(lambda: load.sent > 100, timeout_s=10)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # Polled from the kill on, while the load runs: the budget is the view's alone.
        seen_down = wait_until(lambda: fleet.node_view(victim)["live"] is False, SEEN_DOWN_WITHIN_S, 0.05)
        seen_down_s = time.monotonic() - killed_at
        at_kill = load.sent
        assert wait_until(lambda: load.sent > at_kill + 200, timeout_s=30)
        print(f"right after SIGKILL of {victim}: {load.report()}; not live after {seen_down_s:.2f}s")
        assert seen_down, f"{victim} still shown live {SEEN_DOWN_WITHIN_S}s after SIGKILL"
        assert load.failures == [], load.failures[:5]

        # The launcher restarts the node; it fetches the active models from the inferrer by itself.
        def restarted() -> bool:
            return fleet.pid(victim) != pid and fleet.serves(victim, "iris")

        assert wait_until(restarted, timeout_s=30, interval_s=0.25)
        rejoined = load.mark()
        assert wait_until(lambda: load.nodes[victim] > rejoined[victim], timeout_s=30)
    print(f"whole run, {victim} killed and rejoined: {load.report()}")
    assert load.failures == [], load.failures[:5]
