"""What a binding does with a batch of messages: predict (with a model or a graph, through the
balanced and batched path) and write one output per message, or converge messages by key in the
broker. A message the target cannot take (its fields, its width, its values) is dead-lettered with
the reason; a failure of the fleet (5xx) is raised, and the batch is tried again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import redis.asyncio as aioredis

from artifacts.schema import ModelSchema
from inferrer.dataplane.prediction import PredictionService
from inferrer.dataplane.rows import read_rows
from inferrer.errors import InferrerError, InvalidInput, PayloadTooLarge
from inferrer.graphs.service import GraphService
from inferrer.jobs.targets import Target, resolve_target
from inferrer.state.repository import ModelRepository
from inferrer.streams.broker import BindingKeys
from inferrer.streams.group_reader import dead_letter
from inferrer.streams.records import Settled, StreamMessage
from inferrer.streams.scripts import CONVERGE_ADD, CONVERGE_EXPIRE
from inferrer.streams.spec import StreamBinding

_EXPIRE_CHUNK = 500
# What a node or the gateway answers when the rows themselves are refused: the message's fault.
_INPUT_REFUSED = (400, 413, 422)


@dataclass
class Handled:
    settled: list[Settled] = field(default_factory=list)  # to write and acknowledge
    joined: int = 0  # converge: messages kept in (or closing) a group, acknowledged already
    duplicates: int = 0  # converge: messages settled before by another consumer


class Predicting:
    def __init__(
        self,
        spec: StreamBinding,
        repository: ModelRepository,
        graphs: GraphService,
        prediction: PredictionService,
        rows_allowed: Callable[[int], int],
        consumer: str,
    ) -> None:
        self.spec = spec
        self.consumer = consumer
        self.repository = repository
        self.graphs = graphs
        self.prediction = prediction
        self.rows_allowed = rows_allowed

    async def handle(self, messages: list[StreamMessage]) -> Handled:
        spec = self.spec
        target = await resolve_target(
            self.repository, self.graphs, spec.model, spec.graph, spec.version, spec.prediction
        )
        signature = target.reader.signature
        max_rows = self.rows_allowed(signature.n_features)
        handled, readable = Handled(), []
        for message in messages:
            try:
                readable.append((message, message_rows(message, spec, signature, max_rows)))
            except (InvalidInput, PayloadTooLarge) as exc:
                handled.settled.append(dead_letter(message, spec, exc.message))
        chunks = _chunks(readable, max_rows)
        done = await asyncio.gather(
            *(self._predict(target, chunk) for chunk in chunks), return_exceptions=True
        )
        for chunk, result in zip(chunks, done, strict=True):
            if isinstance(result, list):
                handled.settled += result
            elif isinstance(result, InferrerError) and result.status_code in _INPUT_REFUSED:
                handled.settled += await self._one_by_one(target, chunk)  # which of them it was
            else:
                raise result
        return handled

    async def _one_by_one(
        self, target: Target, chunk: list[tuple[StreamMessage, np.ndarray]]
    ) -> list[Settled]:
        settled = []
        for one in chunk:
            try:
                settled += await self._predict(target, [one])
            except InferrerError as exc:
                if exc.status_code not in _INPUT_REFUSED:
                    raise  # the target's trouble (a version deleted meanwhile), not the message's
                settled.append(dead_letter(one[0], self.spec, exc.message))
        return settled

    async def _predict(self, target: Target, chunk: list[tuple[StreamMessage, np.ndarray]]) -> list[Settled]:
        rows = np.concatenate([rows for _, rows in chunk]) if len(chunk) > 1 else chunk[0][1]
        if target.graph is not None:
            answer = await self.graphs.predict(await self.graphs.deployed(target.graph, target.version), rows)
            predictions, named, node = (
                answer.predictions,
                {"graph": target.graph, "version": target.version},
                "graph",
            )
        else:
            result = await self.prediction.predict(target.reader, rows, [self.spec.prediction])
            predictions, node = result.outputs[self.spec.prediction], result.node
            named = {"model": target.reader.name, "version": result.version}
        settled, start = [], 0
        for message, message_rows_ in chunk:
            end = start + len(message_rows_)
            fields = {"source_id": message.id, **named, "node": node}
            if (key := message.fields.get(self.spec.key)) is not None:
                fields["key"] = key
            fields["predictions"] = orjson.dumps(predictions[start:end]).decode()
            fields["deliveries"] = str(message.deliveries)
            fields["consumer"] = self.consumer  # the gateway process that wrote it
            settled.append(Settled(message, fields))
            start = end
        return settled


class Converging:
    def __init__(self, spec: StreamBinding, redis: aioredis.Redis) -> None:
        assert spec.converge is not None
        self.spec = spec
        self.rule = spec.converge
        self.redis = redis
        self.keys = BindingKeys(spec.name)
        self._add = redis.register_script(CONVERGE_ADD)
        self._expire = redis.register_script(CONVERGE_EXPIRE)
        self._common_keys = [self.keys.open_groups, spec.output, spec.dead_letter_stream, self.keys.written]
        self._common_args = [self.keys.group_prefix, self.rule.on_timeout, self.keys.per_second]

    async def handle(self, messages: list[StreamMessage]) -> Handled:
        """Each message kept in its key's group (and acknowledged) in one step; the group written
        out when it has `count` messages."""
        handled, keyed = Handled(), []
        for message in messages:
            key = message.fields.get(self.spec.key)
            if message.undecodable:
                handled.settled.append(dead_letter(message, self.spec, "a field is not UTF-8 text"))
            elif key is None:
                handled.settled.append(
                    dead_letter(message, self.spec, f"no {self.spec.key!r} field to converge by")
                )
            else:
                keyed.append((message, key))
        if keyed:
            async with self.redis.pipeline(transaction=False) as pipe:
                for message, key in keyed:
                    part = orjson.dumps({"id": message.id, "fields": message.fields}).decode()
                    args: list[Any] = [
                        *self._common_args, self.spec.group_name, message.id, key, part,
                        self.rule.count, self.rule.max_open, self.rule.timeout_s,
                    ]  # fmt: skip
                    await self._add(keys=[*self._common_keys, self.spec.input], args=args, client=pipe)
                answers = await pipe.execute()
            handled.duplicates = answers.count("duplicate")
            handled.joined = len(answers) - handled.duplicates
        return handled

    async def close_expired(self) -> int:
        """Groups open longer than the timeout, closed by the rule (of several consumers, one does)."""
        timeout_ms = int(self.rule.timeout_s * 1000)
        seconds, micros = await self.redis.time()
        due_before = seconds * 1000 + micros // 1000 - timeout_ms
        closed = 0
        while keys := await self.redis.zrangebyscore(
            self.keys.open_groups, "-inf", due_before, 0, _EXPIRE_CHUNK
        ):
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    args: list[Any] = [*self._common_args, key, timeout_ms, self.rule.count]
                    await self._expire(keys=self._common_keys, args=args, client=pipe)
                closed += sum(await pipe.execute())
            if len(keys) < _EXPIRE_CHUNK:
                break
        return closed


def message_rows(
    message: StreamMessage, spec: StreamBinding, signature: ModelSchema, max_rows: int
) -> np.ndarray:
    """A message's rows, read as the predict route reads a body's (InvalidInput: why not)."""
    if message.undecodable:
        raise InvalidInput("a field is not UTF-8 text")
    if spec.features == "instances":
        raw = message.fields.get(spec.instances_field)
        if raw is None:
            raise InvalidInput(f"no {spec.instances_field!r} field (a JSON list of rows)")
        try:
            instances = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the {spec.instances_field!r} field is not JSON: {exc}") from None
        return read_rows({"instances": instances}, signature, max_rows)
    names = signature.feature_names
    if names is None:
        raise InvalidInput("this model was fitted without feature names: use features=instances")
    record = {name: _field_value(value) for name, value in message.fields.items() if name in set(names)}
    if len(record) != len(names):
        missing = ", ".join(name for name in names if name not in record)
        raise InvalidInput(f"missing the feature fields {missing}")
    return read_rows({"records": [record]}, signature, max_rows)


def _field_value(text: str) -> object:
    """A field's text as the JSON value it spells (a number, true, null), else as the text itself."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    return value if value is None or isinstance(value, (int, float, bool)) else text


def _chunks(
    readable: list[tuple[StreamMessage, np.ndarray]], max_rows: int
) -> list[list[tuple[StreamMessage, np.ndarray]]]:
    """Messages grouped into predictions of at most `max_rows` rows (one request's limit)."""
    chunks: list[list[tuple[StreamMessage, np.ndarray]]] = []
    rows = max_rows
    for one in readable:
        if rows + len(one[1]) > max_rows:
            chunks.append([])
            rows = 0
        chunks[-1].append(one)
        rows += len(one[1])
    return chunks
