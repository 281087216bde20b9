"""The success bodies of the gateway's stream routes (inferrer/api/streams.py), as its document
declares them."""

from __future__ import annotations

from typing import Literal

from wire.openapi import Answer
from wire.partition_calls import PredictionKind


class ConvergeView(Answer):
    count: int
    timeout_s: float
    on_timeout: Literal["partial", "dead_letter"]
    max_open: int


class StreamView(Answer):
    name: str
    input: str
    output: str
    dead_letter: str
    model: str | None  # what each message is predicted with: a model,
    graph: str | None  # an inference graph,
    converge: ConvergeView | None  # or nothing: messages joined by key
    version: str | None  # None: the active version when each batch is predicted
    prediction: PredictionKind
    group: str
    start: Literal["earliest", "latest"]
    batch: int
    features: Literal["instances", "records"]
    instances_field: str
    key: str
    max_deliveries: int
    paused: bool
    created: str


class StreamFigures(Answer):
    lag: int | None  # input messages the group has not read (None: the broker cannot tell)
    pending: int  # read, not yet settled
    consumers: int
    dead_letters: int
    written: int  # output messages, all time
    messages_per_second: float  # output messages per second, last 10 s, every gateway
    open_groups: int  # converge groups waiting for more messages
    error: str | None  # the last failure a consumer met, until one succeeds


class StreamDetail(StreamView):
    figures: StreamFigures


class StreamList(Answer):
    streams: list[StreamView]


class MessagesAdded(Answer):
    stream: str
    ids: list[str]  # in the order given
