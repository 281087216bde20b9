"""The bindings in the broker: created once by name (of any number of gateways, one wins), paused,
resumed, deleted with the state they kept; and the figures every gateway reads the same."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from inferrer.errors import InvalidInput, StreamBindingExists, StreamBindingNotFound
from inferrer.streams.broker import BINDINGS, ERRORS, PAUSED, RATE_WINDOW_S, BindingKeys, answered
from inferrer.streams.records import BindingFigures, BindingRecord
from inferrer.streams.spec import StreamBinding

_DELETE_CHUNK = 1000
log = logging.getLogger("inferrer.streams")


class BindingRegistry:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._specs: dict[str, tuple[str, StreamBinding]] = {}  # each stored text validated once

    async def create(self, spec: StreamBinding) -> BindingRecord:
        """The binding and its consumer group: the group starts at the stream's first message or at
        its next one; a group that exists already keeps its place."""
        stored = orjson.dumps({"spec": spec.stored(), "created": time.time()}).decode()
        with answered():
            for key in (spec.input, spec.output, spec.dead_letter_stream):
                kind: Any = await self.redis.type(key)
                if kind not in ("none", "stream"):
                    raise InvalidInput(
                        f"{key!r} holds a {kind}, not a stream: a binding reads and writes streams only"
                    )
            if not await self.redis.hsetnx(BINDINGS, spec.name, stored):
                raise StreamBindingExists(
                    f"a stream binding named {spec.name!r} exists: delete it first, or pick another name"
                )
            try:
                start = "0" if spec.start == "earliest" else "$"
                await self.redis.xgroup_create(spec.input, spec.group_name, id=start, mkstream=True)
            except redis_errors.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    await self.redis.hdel(BINDINGS, spec.name)
                    raise
            await self.redis.srem(PAUSED, spec.name)
            await self.redis.hdel(ERRORS, spec.name)
        return self._record(spec.name, stored, paused=False)

    async def all(self) -> list[BindingRecord]:
        with answered():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(BINDINGS)
                pipe.smembers(PAUSED)
                stored, paused = await pipe.execute()
        self._specs = {name: self._specs[name] for name in stored if name in self._specs}
        records = []
        for name, text in sorted(stored.items()):
            try:
                records.append(self._record(name, text, name in paused))
            except ValueError as exc:  # written by another release of the fleet: left alone
                log.warning("streams: the stored binding %s is not one this gateway reads: %s", name, exc)
        return records

    async def get(self, name: str) -> BindingRecord:
        with answered():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hget(BINDINGS, name)
                pipe.sismember(PAUSED, name)
                text, paused = await pipe.execute()
        if text is None:
            raise StreamBindingNotFound(f"no stream binding named {name!r}")
        return self._record(name, text, bool(paused))

    async def set_paused(self, name: str, paused: bool) -> BindingRecord:
        await self.get(name)
        with answered():
            await (self.redis.sadd(PAUSED, name) if paused else self.redis.srem(PAUSED, name))
        return await self.get(name)

    async def delete(self, name: str) -> BindingRecord:
        """No longer consumed; its streams and consumer group stay (they are the user's), its
        counters and open converge groups go."""
        record = await self.get(name)
        keys = BindingKeys(name)
        with answered():
            await self.redis.hdel(BINDINGS, name)
            await self.redis.srem(PAUSED, name)
            await self.redis.hdel(ERRORS, name)
            while groups := await self._open_groups(keys):
                await self.redis.delete(*(keys.group_prefix + key for key in groups))
                await self.redis.zrem(keys.open_groups, *groups)
            await self.redis.delete(keys.written, keys.reasons, keys.open_groups)
        return record

    async def _open_groups(self, keys: BindingKeys) -> list[str]:
        found: Any = await self.redis.zrange(keys.open_groups, 0, _DELETE_CHUNK - 1)
        return list(found)

    async def figures(self, spec: StreamBinding) -> BindingFigures:
        keys = BindingKeys(spec.name)
        with answered():
            now = int((await self.redis.time())[0])
            seconds = [keys.per_second + str(now - back) for back in range(RATE_WINDOW_S)]
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xinfo_groups(spec.input)
                pipe.xlen(spec.dead_letter_stream)
                pipe.get(keys.written)
                pipe.mget(seconds)
                pipe.zcard(keys.open_groups)
                pipe.hget(ERRORS, spec.name)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
        groups, dead, written, counts, open_groups, error = replies
        group: dict[str, Any] = next((g for g in _list(groups) if g.get("name") == spec.group_name), {})
        lag = group.get("lag")
        return BindingFigures(
            lag=int(lag) if isinstance(lag, int) else None,
            pending=int(group.get("pending", 0)),
            consumers=int(group.get("consumers", 0)),
            dead_letters=dead if isinstance(dead, int) else 0,
            written=int(written or 0),
            per_second=sum(int(c or 0) for c in counts) / RATE_WINDOW_S,
            open_groups=open_groups if isinstance(open_groups, int) else 0,
            error=error if isinstance(error, str) else None,
        )

    def _record(self, name: str, text: str, paused: bool) -> BindingRecord:
        cached = self._specs.get(name)
        if cached is None or cached[0] != text:
            stored = orjson.loads(text)
            cached = self._specs[name] = (text, StreamBinding.model_validate(stored["spec"]))
        created = orjson.loads(text)["created"]
        return BindingRecord(spec=cached[1], created=float(created), paused=paused)


def _list(groups: object) -> list[dict[str, Any]]:
    """XINFO GROUPS of a stream that is gone (deleted by hand) is an error: no group."""
    return groups if isinstance(groups, list) else []
