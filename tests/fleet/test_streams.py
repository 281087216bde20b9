"""Stream bindings on a real fleet (`modelfleet up` with BROKER_PORT: the launcher's own Redis,
append-only, `appendfsync always`): 100,000 messages through a model binding, a SIGKILL of the
consuming gateway and of the broker mid-flow, converge over 5,000 keys, and two fleets' gateways
sharing one binding. Each test prints its figures."""

from __future__ import annotations

import collections
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from deploy.ephemeral_fleet import RunningFleet, free_ports, start_fleet, wait_until
from testbed.broker_server import BrokerClient

pytestmark = pytest.mark.fleet

CLAIM_IDLE_S = 3


@pytest.fixture(scope="module")
def streaming(tmp_path_factory: pytest.TempPathFactory, pipeline: Pipeline) -> Iterator[RunningFleet]:
    """Two nodes, two gateway processes (two consumers of every binding), the broker on its port."""
    (port,) = free_ports(1)
    fleet = start_fleet(
        tmp_path_factory.mktemp("streams"),
        nodes=2,
        extra_args=("--inferrer-workers", "2"),
        env_lines=f"BROKER_PORT={port}\nINFERRER_STREAMS_CLAIM_IDLE_S={CLAIM_IDLE_S}\n",
    )
    assert fleet.deploy("risk", sio.dumps(pipeline)).status_code == 201
    yield fleet
    assert fleet.stop() == 0, fleet.log()


def broker_url(fleet: RunningFleet) -> str:
    lines = fleet.env_file.read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line.startswith("BROKER_"))
    return f"redis://:{values['BROKER_PASSWORD']}@127.0.0.1:{values['BROKER_PORT']}/0"


def broker(fleet: RunningFleet) -> BrokerClient:
    return BrokerClient(broker_url(fleet))


def bind(fleet: RunningFleet, **body: Any) -> None:
    answer = httpx.post(f"{fleet.url}/api/v1/streams", json=body, headers=fleet.auth, timeout=30)
    assert answer.status_code == 201, answer.text


def produce_file(fleet: RunningFleet, path: Path, stream: str) -> None:
    done = fleet.cli("streams", "produce", str(path), "--stream", stream)
    assert done.returncode == 0, done.stderr
    print(done.stdout.strip())


def messages_file(path: Path, rows: np.ndarray, poison: int = 0) -> Path:
    with path.open("wb") as out:
        for i, row in enumerate(rows):
            out.write(orjson.dumps({"key": f"k{i}", "instances": [row.tolist()]}) + b"\n")
        for i in range(poison):
            bad = [[1.0, 2.0]] if i % 2 else [["x"] * rows.shape[1]]
            out.write(orjson.dumps({"key": f"poison{i}", "instances": bad}) + b"\n")
    return path


def settled_outputs(
    client: BrokerClient, stream: str, count: int, timeout_s: float
) -> list[tuple[str, dict[str, str]]]:
    assert wait_until(lambda: client.length(stream) >= count, timeout_s=timeout_s, interval_s=0.5), (
        f"{client.length(stream)} of {count} outputs in {stream}"
    )
    return client.entries(stream)


def check_each_once(
    client: BrokerClient, source: str, entries: list[tuple[str, dict[str, str]]], expected: list[int]
) -> collections.Counter[str]:
    """Every input id in the output once, its prediction the in-process one; the deliveries seen."""
    inputs = [mid for mid, fields in client.entries(source) if not fields["key"].startswith("poison")]
    by_source = collections.defaultdict(list)
    for _, fields in entries:
        by_source[fields["source_id"]].append(fields)
    assert set(by_source) >= set(inputs)
    assert [len(by_source[mid]) for mid in inputs] == [1] * len(inputs)  # no duplicate at all
    assert [orjson.loads(by_source[mid][0]["predictions"])[0] for mid in inputs] == expected
    return collections.Counter(fields[0]["deliveries"] for fields in by_source.values())


def latency_ms(entries: list[tuple[str, dict[str, str]]]) -> tuple[float, float]:
    """Produce to output, p50 and p99: the output id's time less its source id's (the broker's clock)."""
    spans = [int(mid.split("-")[0]) - int(f["source_id"].split("-")[0]) for mid, f in entries]
    return float(np.percentile(spans, 50)), float(np.percentile(spans, 99))


def test_100000_messages_through_a_model_binding_each_once_as_predicted_in_process(
    streaming: RunningFleet, pipeline: Pipeline, tmp_path: Path
) -> None:
    rows = np.random.default_rng(11).normal(size=(100_000, 6))
    expected = pipeline.predict(rows).tolist()
    client = broker(streaming)
    bind(streaming, name="bulk", input="bulk-in", output="bulk-out", model="risk", batch=500)
    started = time.monotonic()
    produce_file(streaming, messages_file(tmp_path / "bulk.jsonl", rows, poison=10), "bulk-in")
    entries = settled_outputs(client, "bulk-out", 100_000, timeout_s=600)
    elapsed = time.monotonic() - started
    deliveries = check_each_once(client, "bulk-in", entries, expected)
    letters = client.fields("bulk-out.dead-letter")
    p50, p99 = latency_ms(entries)
    print(f"100,000 messages in {elapsed:.1f} s ({100_000 / elapsed:,.0f}/s, produce included); "
          f"produce-to-output p50 {p50:.0f} ms, p99 {p99:.0f} ms; deliveries {dict(deliveries)}; "
          f"{len(letters)} dead letters")  # fmt: skip
    assert len(letters) == 10
    assert all("expected 6 features" in f["reason"] or "only numbers" in f["reason"] for f in letters)
    assert {f["key"] for f in entries_fields(entries)} >= {"k0", "k99999"}
    detail = httpx.get(f"{streaming.url}/api/v1/streams/bulk", headers=streaming.auth, timeout=30).json()
    assert detail["figures"]["written"] == 100_000 and detail["figures"]["pending"] == 0


def entries_fields(entries: list[tuple[str, dict[str, str]]]) -> list[dict[str, str]]:
    return [fields for _, fields in entries]


def test_sigkill_of_the_consuming_gateway_and_of_the_broker_loses_no_message(
    streaming: RunningFleet, pipeline: Pipeline, tmp_path: Path
) -> None:
    rows = np.random.default_rng(12).normal(size=(60_000, 6))
    expected = pipeline.predict(rows).tolist()
    client = broker(streaming)
    produce_file(streaming, messages_file(tmp_path / "hard.jsonl", rows), "hard-in")
    bind(streaming, name="hard", input="hard-in", output="hard-out", model="risk", batch=100)  # the backlog
    assert wait_until(lambda: client.length("hard-out") >= 3_000, timeout_s=120, interval_s=0.05)
    gateway = streaming.pid("inferrer")
    os.killpg(gateway, signal.SIGKILL)  # the gateway and both its worker processes, mid-flow
    at_kill = client.length("hard-out")
    assert at_kill < 50_000, "the flow was over before the kill"
    assert wait_until(lambda: streaming.pid("inferrer") != gateway and streaming.is_ready(), timeout_s=120)
    assert wait_until(lambda: client.length("hard-out") >= at_kill + 3_000, timeout_s=120, interval_s=0.05)
    broker_pid = streaming.pid("broker")
    os.kill(broker_pid, signal.SIGKILL)  # what it answered was on disk (appendfsync always)
    at_broker_kill = client_length_when_back(streaming, client, broker_pid)
    entries = settled_outputs(client, "hard-out", 60_000, timeout_s=300)
    deliveries = check_each_once(client, "hard-in", entries, expected)
    print(f"gateway SIGKILL at {at_kill} outputs, broker SIGKILL at ~{at_broker_kill}; "
          f"60,000 inputs, {len(entries)} outputs, deliveries {dict(deliveries)}")  # fmt: skip
    assert len(entries) == 60_000
    assert int(max(deliveries)) >= 2  # some were taken over from the killed consumers


def client_length_when_back(fleet: RunningFleet, client: BrokerClient, old_pid: int) -> int:
    """The output's length once the launcher has started the broker again."""
    assert wait_until(lambda: fleet.pid("broker") != old_pid, timeout_s=60)

    def answers() -> bool:
        try:
            return client.length("hard-out") >= 0
        except Exception:
            return False

    assert wait_until(answers, timeout_s=60)
    return client.length("hard-out")


def test_converge_over_5000_keys_joins_4900_and_closes_100_by_the_timeout(
    streaming: RunningFleet, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    parts = [{"key": f"order-{k}", "part": p} for k in range(4_900) for p in range(3)]
    parts += [{"key": f"late-{k}", "part": p} for k in range(100) for p in range(1 + k % 2)]
    order = rng.permutation(len(parts))
    path = tmp_path / "parts.jsonl"
    path.write_bytes(b"".join(orjson.dumps(parts[i]) + b"\n" for i in order))
    client = broker(streaming)
    rule = {"count": 3, "timeout_s": 5, "on_timeout": "partial"}
    bind(streaming, name="orders", input="parts", output="orders", converge=rule, batch=200)
    produce_file(streaming, path, "parts")
    peak = 0

    def all_closed() -> bool:
        nonlocal peak
        peak = max(peak, int(client.redis.zcard("modelfleet:streams:orders:open")))
        return client.length("orders") >= 5_000

    assert wait_until(all_closed, timeout_s=300, interval_s=0.2)
    joined = client.fields("orders")
    complete = [j for j in joined if j["state"] == "complete"]
    partial = [j for j in joined if j["state"] == "partial"]
    left = int(client.redis.zcard("modelfleet:streams:orders:open"))
    print(f"{len(parts)} parts: {len(complete)} joined, {len(partial)} partial; "
          f"open groups at most {peak}, {left} left")  # fmt: skip
    assert len(joined) == 5_000
    assert sorted(j["key"] for j in complete) == sorted(f"order-{k}" for k in range(4_900))
    assert sorted(j["key"] for j in partial) == sorted(f"late-{k}" for k in range(100))
    assert all(int(j["count"]) == 1 + int(j["key"].split("-")[1]) % 2 for j in partial)
    assert left == 0 and list(client.redis.scan_iter("modelfleet:streams:orders:group:*")) == []


def test_two_fleets_gateways_share_one_binding_each_message_once(
    streaming: RunningFleet, pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second fleet (its own gateway, node and repository) names the first one's broker: the
    binding lives in the broker, so both gateways consume it through the one consumer group."""
    client = broker(streaming)
    second = start_fleet(
        tmp_path_factory.mktemp("second"), nodes=1,
        env_lines=f"INFERRER_STREAMS_BROKER_URL={broker_url(streaming)}\n",
    )  # fmt: skip
    try:
        assert second.deploy("risk", sio.dumps(pipeline)).status_code == 201
        rows = np.random.default_rng(13).normal(size=(40_000, 6))
        expected = pipeline.predict(rows).tolist()
        bind(streaming, name="shared", input="shared-in", output="shared-out", model="risk", batch=50)
        produce_file(
            streaming, messages_file(tmp_path_factory.mktemp("shared") / "m.jsonl", rows), "shared-in"
        )
        entries = settled_outputs(client, "shared-out", 40_000, timeout_s=300)
        check_each_once(client, "shared-in", entries, expected)
        writers = collections.Counter(fields["consumer"] for _, fields in entries)
        work = {name: sum(n for c, n in writers.items() if runs_in(fleet, c)) for name, fleet in
                (("first", streaming), ("second", second))}  # fmt: skip
    finally:
        assert second.stop() == 0, second.log()
    print(f"40,000 messages, each once; outputs by consumer: {dict(writers)}; by fleet: {work}")
    assert work["first"] > 0 and work["second"] > 0 and sum(work.values()) == 40_000


def runs_in(fleet: RunningFleet, consumer: str) -> bool:
    """A consumer (named `<gateway>-<pid>-<token>`) of this fleet's gateway: its process or one of
    that process's workers."""
    pid = int(consumer.rsplit("-", 2)[1])
    gateway = fleet.pid("inferrer")
    if pid == gateway:
        return True
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == gateway
    except OSError:
        return False
