"""A stream binding as created (`POST /api/v1/streams`): the stream it consumes, what it does with
each message (predict with a model or a graph, or converge messages by key) and where it writes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.json_schema import SkipJsonSchema

from artifacts.names import Segment
from artifacts.schema import JsonInt
from wire.partition_calls import PredictionKind

# The broker's keys this product keeps for itself: no binding may read or write one.
RESERVED_PREFIX = "modelfleet:"
# A Redis stream's key, as a binding names it.
StreamKey = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
# A message's field name, as any producer may write one.
MessageField = Annotated[str, Field(min_length=1, max_length=1000)]
# A message field's name, as a binding names the one it reads.
FieldName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
Start = Literal["earliest", "latest"]
FeatureLayout = Literal["instances", "records"]
OnTimeout = Literal["partial", "dead_letter"]
_TARGETS = ("model", "graph", "converge")
_ONE_TARGET: dict[str, Any] = {"oneOf": [{"required": [target]} for target in _TARGETS]}


def _declared(schema: dict[str, Any]) -> None:
    """Exactly one target (checked again by the validator)."""
    schema["allOf"] = [_ONE_TARGET]


class ConvergeRule(BaseModel):
    """Wait for `count` messages with the same key, then write one joined message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: JsonInt = Field(ge=2, le=1000)
    # A group still short of `count` this long after its first message is handled by `on_timeout`.
    timeout_s: float = Field(default=60.0, gt=0, le=7 * 86400)
    # `partial`: written to the output with state=partial; `dead_letter`: to the dead-letter stream.
    on_timeout: OnTimeout = "partial"
    # Most groups open at once: a new key beyond it closes the oldest group early, by `on_timeout`.
    max_open: JsonInt = Field(default=100_000, ge=1, le=10_000_000)


class StreamBinding(BaseModel):
    """Consume `input` through the consumer group `group`; write one message to `output` per input
    message (or one per converged group); dead-letter what cannot be handled."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_declared)

    name: Segment
    input: StreamKey
    output: StreamKey
    model: SkipJsonSchema[None] | Segment = None
    graph: SkipJsonSchema[None] | Segment = None  # an inference graph, in place of a model
    converge: SkipJsonSchema[None] | ConvergeRule = None  # no prediction: join messages by key
    version: SkipJsonSchema[None] | Segment = None  # default: the active version, per batch
    prediction: PredictionKind = "predict"
    group: SkipJsonSchema[None] | Segment = None  # default: the binding's name
    # Where a new consumer group starts: the stream's first message, or its next one.
    start: Start = "earliest"
    batch: JsonInt = Field(default=100, ge=1, le=1000)  # messages read at once
    # instances: the field `instances_field` holds a JSON list of rows of numbers; records: the
    # message's fields named as the model's features are one row.
    features: FeatureLayout = "instances"
    instances_field: FieldName = "instances"
    key: FieldName = "key"  # the partition key's field: copied to outputs; converge groups by it
    dead_letter: SkipJsonSchema[None] | StreamKey = None  # default: <output>.dead-letter
    # A message whose consumer died or hung this many times goes to the dead letter.
    max_deliveries: JsonInt = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _one_target(self) -> StreamBinding:
        given = [target for target in _TARGETS if getattr(self, target) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_TARGETS)}")
        if self.converge is not None and (self.version is not None or self.prediction != "predict"):
            raise ValueError("a converge binding predicts nothing: version and prediction do not apply")
        streams = (self.input, self.output, self.dead_letter_stream)
        if any(stream.startswith(RESERVED_PREFIX) for stream in streams):
            raise ValueError(f"stream keys starting with {RESERVED_PREFIX!r} are the fleet's own")
        if len(set(streams)) != 3:
            raise ValueError("input, output and dead_letter must be three different streams")
        return self

    @property
    def group_name(self) -> str:
        return self.group or self.name

    @property
    def dead_letter_stream(self) -> str:
        return self.dead_letter or f"{self.output}.dead-letter"

    @property
    def target(self) -> str:
        """What it runs, in words: `model iris`, `graph fraud`, `converge 3`."""
        if self.converge is not None:
            return f"converge {self.converge.count}"
        return f"graph {self.graph}" if self.graph is not None else f"model {self.model}"

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


stream_binding = TypeAdapter(StreamBinding)


class MessageBatch(BaseModel):
    """Messages for a binding's input (`POST /api/v1/streams/{name}/messages`): each an object of
    fields; a value that is not text is written as its JSON (a list of rows, a number)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[Annotated[dict[MessageField, Any], Field(min_length=1, max_length=1000)]] = Field(
        min_length=1, max_length=10_000
    )


message_batch = TypeAdapter(MessageBatch)


def field_text(value: Any) -> str:
    """A message field's value as the broker keeps it: text as it is, anything else as JSON."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("a field's value is not UTF-8 text (an unpaired surrogate)") from None
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        raise ValueError(f"a field's value cannot be written as JSON: {exc}") from None
