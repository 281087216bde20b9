"""How many nodes the work needs: the autoscaler's rules, from measured signals, with no I/O.

Two rules scale up:
- **wait**: the work beyond what the nodes take at once, drained at their measured pace, would keep
  a new request waiting longer than a node takes to start (the expected wait exceeds the average
  cold start), or no node runs at all while work waits;
- **load**: in-flight work per node stayed above the target for the whole scale-up window.

Scaling down removes one node at a time, once the fleet has needed fewer nodes for the keep-warm
time (the need is the peak over the scale-down window), and never sooner than the cool-down after
the last change. The desired count never leaves [min, max].
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Limits:
    min_nodes: int
    max_nodes: int
    target_in_flight: float  # online requests one node should carry at once
    keep_warm_s: float
    up_window_s: float
    down_window_s: float
    cooldown_s: float

    @property
    def enabled(self) -> bool:
        return self.max_nodes > self.min_nodes


@dataclass(frozen=True)
class Signals:
    """What the gateways measured, summed over every gateway process."""

    in_flight: int = 0  # online predictions under way (the held ones among them)
    held: int = 0  # online predictions waiting for a first node
    batch_queued: int = 0  # rows waiting in the gateways' batchers (of predictions in flight: shown only)
    partitions_waiting: int = 0  # job partitions queued or under way
    nodes: int = 0  # nodes in the fleet (started, ready or not)
    ready_nodes: int = 0
    predict_s: float | None = None  # moving average of a node's answer time
    cold_start_s: float | None = None  # moving average of start -> ready with the active models

    @property
    def online(self) -> int:
        """Online predictions that need a node (each process's peak may lag its held count)."""
        return max(self.in_flight, self.held)


@dataclass(frozen=True)
class Decision:
    desired: int
    direction: Literal["up", "down", "hold"]
    rule: str  # minimum, maximum, from_zero, wait, load, jobs, keep_warm ("" when holding)
    reason: str


def expected_wait_s(signals: Signals) -> float:
    """How long a new online prediction would wait: what is in flight, drained at the ready
    nodes' measured pace (a node answers a call every `predict_s`, one at a time); infinite with
    work waiting and no node ready."""
    if signals.online == 0:
        return 0.0
    if signals.ready_nodes == 0:
        return math.inf
    return signals.online * (signals.predict_s or 0.0) / signals.ready_nodes


def needed_nodes(signals: Signals, target_in_flight: float) -> int:
    """Nodes the work needs now: the online work at the target per node, and a node per waiting
    job partition (the caller counts at most the partitions the jobs' limit lets run at once)."""
    online = math.ceil(signals.online / target_in_flight) if signals.online else 0
    return max(online, signals.partitions_waiting)


class Autoscaler:
    """The decisions; `decide` is called every interval with fresh signals and the time now."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._needs: deque[tuple[float, int]] = deque()  # (time, need) over the down window
        self._above_since: float | None = None  # in-flight per node above target since
        self._needed_all_since: float | None = None  # the last time every node was needed
        self._changed_at = -math.inf

    def decide(self, signals: Signals, now: float, current: int) -> Decision:
        """`current`: the nodes the fleet runs or is starting (what the last decision asked for)."""
        limits = self.limits
        need = needed_nodes(signals, limits.target_in_flight)
        self._needs.append((now, need))
        while self._needs and self._needs[0][0] < now - limits.down_window_s:
            self._needs.popleft()
        peak = max(n for _, n in self._needs)
        if peak >= current or self._needed_all_since is None:
            self._needed_all_since = now
        per_node = signals.online / current if current else 0.0  # none: the from_zero rule
        if per_node > limits.target_in_flight:
            self._above_since = self._above_since if self._above_since is not None else now
        else:
            self._above_since = None

        if current < limits.min_nodes:
            return self._change(
                now, limits.min_nodes, "up", "minimum", f"below the minimum of {limits.min_nodes}"
            )
        if current > limits.max_nodes:
            return self._change(
                now, limits.max_nodes, "down", "maximum", f"above the maximum of {limits.max_nodes}"
            )
        up = self._scale_up(signals, now, current, need)
        if up is not None:
            return up
        idle_for = now - self._needed_all_since
        if (
            current > limits.min_nodes
            and peak < current
            and idle_for >= limits.keep_warm_s
            and now - self._changed_at >= limits.cooldown_s
        ):
            return self._change(
                now,
                current - 1,
                "down",
                "keep_warm",
                f"{peak} of {current} nodes needed for {idle_for:.1f} s (keep-warm)",
            )
        return Decision(current, "hold", "", "")

    def _scale_up(self, signals: Signals, now: float, current: int, need: int) -> Decision | None:
        limits = self.limits
        if current >= limits.max_nodes:
            return None
        if current == 0 and (signals.online or signals.partitions_waiting):
            return self._change(
                now, max(1, min(need, limits.max_nodes)), "up", "from_zero", "work waits and no node runs"
            )
        starting = current - signals.ready_nodes
        wait = expected_wait_s(signals)
        cold = signals.cold_start_s
        if starting == 0 and cold is not None and wait > cold:
            return self._change(
                now,
                current + 1,
                "up",
                "wait",
                f"expected wait {wait:.2f} s exceeds the cold start {cold:.2f} s",
            )
        if (
            self._above_since is not None
            and now - self._above_since >= limits.up_window_s
            and now - self._changed_at >= limits.cooldown_s
        ):
            desired = min(limits.max_nodes, max(current + 1, need))
            return self._change(
                now, desired, "up", "load",
                f"{signals.online / current:.1f} in flight per node above the target "
                f"{limits.target_in_flight:g} for {limits.up_window_s:g} s",
            )  # fmt: skip
        if signals.partitions_waiting > current and now - self._changed_at >= limits.cooldown_s:
            desired = min(limits.max_nodes, signals.partitions_waiting)
            return self._change(
                now, desired, "up", "jobs", f"{signals.partitions_waiting} job partitions wait"
            )
        return None

    def _change(
        self, now: float, desired: int, direction: Literal["up", "down"], rule: str, reason: str
    ) -> Decision:
        self._changed_at = now
        self._above_since = None
        if direction == "up":
            self._needed_all_since = now
        return Decision(desired, direction, rule, reason)
