"""One consumer's dealings with its group: read new messages, take over those a stopped consumer
left, keep its own messages' idle time fresh, and settle them (output or dead letter, acknowledged
in the same step)."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from inferrer.streams.broker import ERRORS, BindingKeys
from inferrer.streams.records import Settled, StreamMessage
from inferrer.streams.scripts import SETTLE
from inferrer.streams.spec import StreamBinding

_BLOCK_MS = 1000  # a read waits this long for a message, then the loop looks at its binding again


class GroupReader:
    def __init__(
        self, redis: aioredis.Redis, spec: StreamBinding, consumer: str, claim_idle_s: float
    ) -> None:
        self.redis = redis
        self.spec = spec
        self.consumer = consumer
        self.keys = BindingKeys(spec.name)
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._settle = redis.register_script(SETTLE)

    async def read(self) -> list[StreamMessage]:
        """New messages, first deliveries; a group gone (its stream deleted by hand) is made again."""
        spec = self.spec
        try:
            answer: Any = await self.redis.xreadgroup(
                spec.group_name, self.consumer, {spec.input: ">"}, count=spec.batch, block=_BLOCK_MS
            )
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            await self._make_group()
            return []
        return [
            StreamMessage(mid, fields, 1) for _, entries in answer or [] for mid, fields in entries if fields
        ]

    async def _make_group(self) -> None:
        start = "0" if self.spec.start == "earliest" else "$"
        try:
            await self.redis.xgroup_create(self.spec.input, self.spec.group_name, id=start, mkstream=True)
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def stalled(self) -> tuple[list[StreamMessage], list[StreamMessage]]:
        """Messages idle past the claim time (their consumer stopped), now this consumer's: those
        still to try, and those delivered `max_deliveries` times already."""
        spec = self.spec
        try:
            pending: Any = await self.redis.xpending_range(
                spec.input, spec.group_name, "-", "+", spec.batch, idle=self._claim_idle_ms
            )
        except redis_errors.ResponseError:  # NOGROUP: read() makes it again
            return [], []
        if not pending:
            return [], []
        delivered = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        claimed: Any = await self.redis.xclaim(
            spec.input, spec.group_name, self.consumer, self._claim_idle_ms, list[Any](delivered)
        )
        retry: list[StreamMessage] = []
        spent: list[StreamMessage] = []
        for mid, fields in claimed:
            if not fields:
                continue  # deleted from the stream meanwhile
            times = delivered.get(mid, 1)
            (spent if times >= spec.max_deliveries else retry).append(StreamMessage(mid, fields, times + 1))
        return retry, spent  # what XCLAIM left out: deleted (Redis dropped it) or taken by another

    async def forget_gone_consumers(self, idle_s: float) -> None:
        """Consumers (each a gateway process's life) that hold nothing and were not seen for
        `idle_s`: dropped from the group, which would otherwise list every process ever started."""
        spec = self.spec
        consumers: Any = await self.redis.xinfo_consumers(spec.input, spec.group_name)
        for consumer in consumers:
            if (
                consumer["name"] != self.consumer
                and consumer["pending"] == 0
                and consumer["idle"] > idle_s * 1000
            ):
                await self.redis.xgroup_delconsumer(spec.input, spec.group_name, consumer["name"])

    async def keep(self, ids: list[str]) -> None:
        """Still working on these: their idle time starts again (the delivery count does not grow)."""
        if ids:
            await self.redis.xclaim(
                self.spec.input, self.spec.group_name, self.consumer, 0, list[Any](ids), justid=True
            )

    async def reasons(self, ids: list[str]) -> list[str | None]:
        """Why each message's last try failed, where a consumer recorded it."""
        found: Any = await self.redis.hmget(self.keys.reasons, ids) if ids else []
        return list(found)

    async def failed(self, ids: list[str], reason: str) -> None:
        """Recorded for the dead letter, should the message never succeed; and for the binding's view."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.reasons, mapping=dict.fromkeys(ids, reason))
            pipe.hset(ERRORS, self.spec.name, reason)
            await pipe.execute()

    async def recovered(self) -> None:
        await self.redis.hdel(ERRORS, self.spec.name)

    async def settle(self, settled: list[Settled]) -> tuple[int, int, int]:
        """Each message's output or dead letter written and the message acknowledged, atomically:
        (written, dead-lettered, settled before by another consumer)."""
        args: list[Any] = [self.spec.group_name, self.keys.per_second]
        for one in settled:
            args += [one.message.id, "d" if one.dead else "o", len(one.fields)]
            for name, value in one.fields.items():
                args += [name, value]
        keys = [
            self.spec.input,
            self.spec.output,
            self.spec.dead_letter_stream,
            self.keys.written,
            self.keys.reasons,
        ]
        written, dead, duplicates = await self._settle(keys=keys, args=args)
        return int(written), int(dead), int(duplicates)


def dead_letter(message: StreamMessage, spec: StreamBinding, reason: str) -> Settled:
    """The dead letter of a message: why, where from, and the message itself (to replay it)."""
    fields = {
        "source_id": message.id,
        "source_stream": spec.input,
        "binding": spec.name,
        "reason": reason,
        "deliveries": str(message.deliveries),
        "message": orjson.dumps(message.printable_fields()).decode(),
    }
    return Settled(message, fields, dead=True)
