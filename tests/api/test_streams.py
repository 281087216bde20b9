"""inferrer/api/streams.py in-process, against a real Redis broker: a model binding writes one
output per message with the in-process prediction, poison is dead-lettered with its reason,
converge joins by key and closes late groups by its rule, a stopped consumer's messages are taken
over, and the routes refuse what they must."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline

from testbed.broker_server import BrokerClient, BrokerProcess, broker_server
from tests.declared import assert_declared
from tests.in_process import AUTH, InProcessFleet, in_process_fleet

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerProcess]:
    with broker_server() as process:
        yield process


@pytest.fixture
def streams_on(broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch) -> BrokerClient:
    """The gateway reads its broker from the environment, as a deployed one does; a clean broker."""
    client = broker.client()
    client.redis.flushall()
    monkeypatch.setenv("INFERRER_STREAMS_BROKER_URL", broker.url)
    monkeypatch.setenv("INFERRER_STREAMS_CLAIM_IDLE_S", "1")
    monkeypatch.setenv("INFERRER_STREAMS_REFRESH_S", "0.2")
    return client


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.05)


def outputs(client: BrokerClient, stream: str) -> list[dict[str, str]]:
    return client.fields(stream)


async def create(fleet: InProcessFleet, **body: Any) -> dict[str, Any]:
    answer = await fleet.gateway.post("/api/v1/streams", json=body, headers=AUTH)
    assert answer.status_code == 201, answer.text
    assert_declared(fleet.gateway_app.openapi(), "POST", "/api/v1/streams", answer)
    created: dict[str, Any] = answer.json()
    return created


async def test_each_message_gets_one_output_and_poison_is_dead_lettered(
    tmp_path: Path, streams_on: BrokerClient, pipeline: Pipeline, training_data: tuple[np.ndarray, np.ndarray]
) -> None:
    features = training_data[0][:300]
    expected = pipeline.predict(features).tolist()
    async with in_process_fleet(tmp_path, nodes=2) as fleet:
        await fleet.deploy("risk", sio.dumps(pipeline))
        view = await create(fleet, name="score", input="events", output="scored", model="risk", batch=50)
        assert view["group"] == "score" and view["dead_letter"] == "scored.dead-letter"
        good = [
            {"key": f"k{i}", "instances": orjson.dumps([row.tolist()]).decode()}
            for i, row in enumerate(features)
        ]
        poison = [
            {"key": "wide", "instances": "[[1, 2, 3]]"},
            {"key": "text", "instances": '[["a", "b", "c", "d", "e", "f"]]'},
            {"key": "broken", "instances": "[[1, 2"},
            {"key": "missing", "rows": "[[1, 2, 3, 4, 5, 6]]"},
        ]
        binary = {"key": "binary", "instances": b"\xff\xfe[[1, 2, 3, 4, 5, 6]]"}  # not UTF-8
        ids = [streams_on.add("events", m) for m in good[:150] + poison + good[150:]]
        binary_id = str(streams_on.redis.xadd("events", binary))
        one = {"messages": [{"key": "api", "instances": [features[0].tolist()]}]}
        added = await fleet.gateway.post("/api/v1/streams/score/messages", json=one, headers=AUTH)
        assert added.status_code == 201, added.text
        assert_declared(fleet.gateway_app.openapi(), "POST", "/api/v1/streams/{name}/messages", added)

        async def all_settled() -> bool:
            return streams_on.length("scored") == 301 and streams_on.length("scored.dead-letter") == 5

        await until(all_settled, "301 outputs and 5 dead letters")
        detail = await fleet.gateway.get("/api/v1/streams/score", headers=AUTH)
        assert_declared(fleet.gateway_app.openapi(), "GET", "/api/v1/streams/{name}", detail)
        metrics = (await fleet.gateway.get("/metrics")).text
    written = outputs(streams_on, "scored")
    by_source = {o["source_id"]: o for o in written}
    assert len(by_source) == 301  # each input once
    for message_id, row_expected in zip(ids[:150] + ids[154:], expected, strict=True):
        out = by_source[message_id]
        assert orjson.loads(out["predictions"]) == [row_expected]
        assert out["model"] == "risk" and out["version"] == "1" and out["deliveries"] == "1"
    assert by_source[added.json()["ids"][0]]["key"] == "api"
    letters = {f["source_id"]: f for f in outputs(streams_on, "scored.dead-letter")}
    reasons = {letters[i]["reason"] for i in ids[150:154]}
    print("dead-letter reasons:", *sorted(reasons), sep="\n  ")
    assert any("expected 6 features per row, got 3" in r for r in reasons)
    assert any("only numbers" in r for r in reasons)
    assert any("not JSON" in r for r in reasons)
    assert any("no 'instances' field" in r for r in reasons)
    assert orjson.loads(letters[ids[150]]["message"]) == poison[0]  # kept to replay
    assert letters[binary_id]["reason"] == "a field is not UTF-8 text"
    figures = detail.json()["figures"]
    assert figures["lag"] == 0 and figures["pending"] == 0 and figures["dead_letters"] == 5
    assert figures["written"] == 301 and figures["messages_per_second"] > 0
    assert 'modelfleet_stream_messages_total{binding="score",outcome="output"} 301.0' in metrics
    assert 'modelfleet_stream_messages_total{binding="score",outcome="dead_letter"} 5.0' in metrics


async def test_converge_joins_by_key_and_closes_late_groups_by_its_rule(
    tmp_path: Path, streams_on: BrokerClient
) -> None:
    keys = [f"order-{i}" for i in range(60)]
    rng = np.random.default_rng(3)
    messages = [{"key": k, "part": str(p)} for k in keys[:50] for p in range(3)]
    messages += [{"key": k, "part": "0"} for k in keys[50:]]  # never complete
    rng.shuffle(messages)  # type: ignore[arg-type]
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        rule = {"count": 3, "timeout_s": 1.5, "on_timeout": "partial"}
        await create(fleet, name="join", input="parts", output="joined", converge=rule)
        for m in messages:
            streams_on.add("parts", m)
        streams_on.add("parts", {"nokey": "x"})

        async def all_closed() -> bool:
            return streams_on.length("joined") == 60

        await until(all_closed, "50 joined and 10 partial")
        detail = (await fleet.gateway.get("/api/v1/streams/join", headers=AUTH)).json()
    joined = outputs(streams_on, "joined")
    complete = [j for j in joined if j["state"] == "complete"]
    partial = [j for j in joined if j["state"] == "partial"]
    assert sorted(j["key"] for j in complete) == sorted(keys[:50])
    assert sorted(j["key"] for j in partial) == sorted(keys[50:])
    for j in complete:
        parts = orjson.loads(j["parts"])
        assert sorted(p["fields"]["part"] for p in parts) == ["0", "1", "2"]
        assert [p["id"] for p in parts] == orjson.loads(j["source_ids"])
    assert streams_on.redis.zcard("modelfleet:streams:join:open") == 0
    assert list(streams_on.redis.scan_iter("modelfleet:streams:join:group:*")) == []  # no state left
    assert detail["figures"]["open_groups"] == 0 and detail["figures"]["dead_letters"] == 1


async def test_converge_keeps_at_most_max_open_groups(tmp_path: Path, streams_on: BrokerClient) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        rule = {"count": 2, "timeout_s": 600, "on_timeout": "dead_letter", "max_open": 5}
        await create(fleet, name="few", input="p", output="j", converge=rule)
        for i in range(20):
            streams_on.add("p", {"key": f"k{i}"})

        async def read() -> bool:
            info = streams_on.redis.xinfo_groups("p")[0]
            return info["lag"] == 0 and info["pending"] == 0

        await until(read, "every message taken")
    assert streams_on.redis.zcard("modelfleet:streams:few:open") == 5
    letters = outputs(streams_on, "j.dead-letter")
    assert len(letters) == 15 and all("closed early: more than 5 groups" in f["reason"] for f in letters)


async def test_a_stopped_consumers_messages_are_taken_over_and_spent_ones_dead_lettered(
    tmp_path: Path, streams_on: BrokerClient, pipeline: Pipeline, training_data: tuple[np.ndarray, np.ndarray]
) -> None:
    """A consumer that read and died is played by this test: it reads through the group before the
    binding exists and never settles (a message it 'read' four times is past max_deliveries)."""
    row = orjson.dumps([training_data[0][0].tolist()]).decode()
    streams_on.redis.xgroup_create("in", "s", id="0", mkstream=True)  # the binding keeps the group's place
    left = streams_on.add("in", {"instances": row})
    spent = streams_on.add("in", {"instances": row})
    streams_on.redis.xreadgroup("s", "ghost", {"in": ">"})
    for _ in range(3):
        streams_on.redis.xclaim("in", "s", "ghost", 0, [spent])  # delivered 4 times
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("risk", sio.dumps(pipeline))
        await create(fleet, name="s", input="in", output="out", model="risk", max_deliveries=3)

        async def settled() -> bool:
            return streams_on.length("out") == 1 and streams_on.length("out.dead-letter") == 1

        await until(settled, "one taken over, one dead-lettered")
    (out,) = outputs(streams_on, "out")
    (letter,) = outputs(streams_on, "out.dead-letter")
    assert out["source_id"] == left and out["deliveries"] == "2"
    assert letter["source_id"] == spent and "delivered 4 times" in letter["reason"]


async def test_the_routes_refuse_what_they_must(
    tmp_path: Path, streams_on: BrokerClient, pipeline: Pipeline
) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        await fleet.deploy("risk", sio.dumps(pipeline))
        base = {"name": "s", "input": "in", "output": "out", "model": "risk"}
        await create(fleet, **base)
        post = fleet.gateway.post
        again = await post("/api/v1/streams", json=base, headers=AUTH)
        unknown = await post("/api/v1/streams", json={**base, "name": "t", "model": "nope"}, headers=AUTH)
        loop = await post("/api/v1/streams", json={**base, "name": "t", "output": "in"}, headers=AUTH)
        two = await post(
            "/api/v1/streams", json={**base, "name": "t", "converge": {"count": 2}}, headers=AUTH
        )
        ours = await post(
            "/api/v1/streams", json={**base, "name": "t", "input": "modelfleet:streams:x"}, headers=AUTH
        )
        streams_on.redis.set("plain", "x")
        wrong_type = await post("/api/v1/streams", json={**base, "name": "t", "input": "plain"}, headers=AUTH)
        wrong_output = await post(
            "/api/v1/streams", json={**base, "name": "t", "output": "plain"}, headers=AUTH
        )
        no_token = await post("/api/v1/streams", json={**base, "name": "t"})
        missing = await fleet.gateway.get("/api/v1/streams/nope", headers=AUTH)
        empty = await post("/api/v1/streams/s/messages", json={"messages": []}, headers=AUTH)
        listed = await fleet.gateway.get("/api/v1/streams", headers=AUTH)
        deleted = await fleet.gateway.delete("/api/v1/streams/s", headers=AUTH)
        gone = await fleet.gateway.get("/api/v1/streams/s", headers=AUTH)
    assert again.status_code == 409 and unknown.status_code == 404
    assert loop.status_code == 422 and "three different streams" in loop.json()["error"]
    assert two.status_code == 422 and ours.status_code == 422
    assert wrong_type.status_code == 422 and "holds a string, not a stream" in wrong_type.json()["error"]
    assert wrong_output.status_code == 422 and "holds a string, not a stream" in wrong_output.json()["error"]
    assert no_token.status_code == 401 and missing.status_code == 404 and empty.status_code == 422
    assert [s["name"] for s in listed.json()["streams"]] == ["s"]
    assert deleted.status_code == 200 and gone.status_code == 404
    assert streams_on.redis.hlen("modelfleet:streams:bindings") == 0


async def test_without_a_broker_the_routes_answer_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INFERRER_STREAMS_BROKER_URL", raising=False)
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        answer = await fleet.gateway.get("/api/v1/streams", headers=AUTH)
    assert answer.status_code == 503 and "no broker" in answer.json()["error"]
