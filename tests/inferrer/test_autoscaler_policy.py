"""The autoscaler's rules, on a made-up clock: each fault of the scheduler it replaces (wrong
time-to-ready bookkeeping, no cap, no keep-warm, a mean that stopped adapting) has a test."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from inferrer.dataplane.batching import Batcher
from inferrer.scaling.policy import Autoscaler, Limits, Signals, expected_wait_s, needed_nodes
from metrics.definitions import InferrerMetrics

LIMITS = Limits(
    min_nodes=1, max_nodes=4, target_in_flight=4, keep_warm_s=10, up_window_s=3, down_window_s=5, cooldown_s=2
)


def idle(nodes: int) -> Signals:
    return Signals(nodes=nodes, ready_nodes=nodes, predict_s=0.01, cold_start_s=5.0)


def busy(nodes: int, in_flight: int, predict_s: float = 0.01, cold: float | None = 5.0) -> Signals:
    return Signals(
        in_flight=in_flight, nodes=nodes, ready_nodes=nodes, predict_s=predict_s, cold_start_s=cold
    )


def test_the_nodes_predict_average_keeps_adapting() -> None:
    batcher = Batcher(64, 0.005, 4, InferrerMetrics(CollectorRegistry()))
    lane = ("m", "1", "sha", ("predict",), False)
    for _ in range(10_000):
        batcher.observe_predict(lane, 0.010)
    for _ in range(60):
        batcher.observe_predict(lane, 0.001)
    assert batcher.predict_s == pytest.approx(0.001, abs=0.0001)  # a cumulative mean would stay ~0.01


def test_the_expected_wait_is_what_is_in_flight_at_the_ready_nodes_pace() -> None:
    assert expected_wait_s(idle(2)) == 0.0
    # 16 in flight over 2 nodes, a call every 0.5 s each: 16 * 0.5 / 2
    assert expected_wait_s(busy(2, in_flight=16, predict_s=0.5)) == pytest.approx(4.0)
    assert math.isinf(expected_wait_s(Signals(held=1)))  # work and no node ready
    assert Signals(in_flight=3, held=3).online == 3  # a held prediction is in flight too
    assert needed_nodes(busy(1, in_flight=9), 4) == 3
    assert needed_nodes(Signals(partitions_waiting=5), 4) == 5


def test_a_wait_longer_than_a_cold_start_adds_a_node_at_once() -> None:
    scaler = Autoscaler(LIMITS)
    quiet = busy(1, in_flight=4, predict_s=1.0, cold=5.0)  # a 4 s wait: a cold start is longer
    assert scaler.decide(quiet, now=0.0, current=1).direction == "hold"
    decision = scaler.decide(busy(1, in_flight=40, predict_s=1.0, cold=5.0), now=0.1, current=1)
    assert (decision.desired, decision.direction, decision.rule) == (2, "up", "wait")
    # while that node starts, the same wait does not add another
    starting = Signals(in_flight=40, nodes=2, ready_nodes=1, predict_s=1.0, cold_start_s=5.0)
    assert scaler.decide(starting, now=0.5, current=2).direction == "hold"


def test_in_flight_above_target_for_the_window_scales_to_the_need_within_max() -> None:
    scaler = Autoscaler(LIMITS)
    load = busy(1, in_flight=32, cold=None)  # no cold start measured yet: the window rule alone
    assert scaler.decide(load, now=0.0, current=1).direction == "hold"
    assert scaler.decide(load, now=2.9, current=1).direction == "hold"
    decision = scaler.decide(load, now=3.0, current=1)
    assert (decision.desired, decision.rule) == (4, "load")  # needs 8, capped at max 4
    assert scaler.decide(busy(4, in_flight=64, cold=None), now=10.0, current=4).direction == "hold"


def test_scale_down_is_one_node_at_a_time_after_keep_warm_and_cooldown() -> None:
    scaler = Autoscaler(LIMITS)
    scaler.decide(busy(4, in_flight=16), now=0.0, current=4)  # every node needed
    assert scaler.decide(idle(4), now=9.0, current=4).direction == "hold"  # keep-warm not over
    down = scaler.decide(idle(4), now=10.5, current=4)
    assert (down.desired, down.direction, down.rule) == (3, "down", "keep_warm")
    assert scaler.decide(idle(3), now=11.0, current=3).direction == "hold"  # cool-down
    assert scaler.decide(idle(3), now=12.6, current=3).desired == 2
    assert scaler.decide(idle(2), now=14.7, current=2).desired == 1
    assert scaler.decide(idle(1), now=60.0, current=1).direction == "hold"  # never below min


def test_a_short_dip_inside_the_down_window_removes_nothing() -> None:
    """Bursty traffic must not thrash: the need weighed is the window's peak."""
    scaler = Autoscaler(LIMITS)
    for second in range(0, 40):
        signals = busy(2, in_flight=8) if second % 4 == 0 else idle(2)
        assert scaler.decide(signals, now=float(second), current=2).direction == "hold", second


def test_from_zero_any_waiting_work_starts_a_node() -> None:
    scaler = Autoscaler(Limits(0, 2, 4, 10, 3, 5, 2))
    for second in range(60):  # idle at zero, well past every window: nothing to do, nothing raised
        assert scaler.decide(Signals(), now=float(second), current=0).direction == "hold"
    held = scaler.decide(Signals(held=1), now=61.0, current=0)
    assert (held.desired, held.rule) == (1, "from_zero")
    jobs = Autoscaler(Limits(0, 2, 4, 10, 3, 5, 2)).decide(Signals(partitions_waiting=32), now=0.0, current=0)
    assert jobs.desired == 2  # a node per waiting partition, within max


def test_the_count_is_brought_back_inside_min_and_max() -> None:
    scaler = Autoscaler(LIMITS)
    assert scaler.decide(idle(0), now=0.0, current=0).desired == 1
    assert scaler.decide(busy(6, in_flight=100), now=1.0, current=6).desired == 4
