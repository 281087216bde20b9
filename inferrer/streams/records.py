"""What moves between the stream modules: a message as read, a binding as stored, its figures."""

from __future__ import annotations

from dataclasses import dataclass

from inferrer.streams.spec import StreamBinding


@dataclass(frozen=True)
class StreamMessage:
    id: str  # the broker's id, `<ms>-<seq>`: also when it was produced
    fields: dict[str, str]
    deliveries: int  # 1 when read first; more when taken over from a consumer that stopped

    @property
    def produced_ms(self) -> int:
        return int(self.id.split("-", 1)[0])

    @property
    def undecodable(self) -> bool:
        """A field or value that is not UTF-8 text (read as surrogates): it cannot be a feature."""
        return any(not _text(k) or not _text(v) for k, v in self.fields.items())

    def printable_fields(self) -> dict[str, str]:
        """The fields as text that can be written back (bytes that are not UTF-8 replaced)."""
        return {_printable(k): _printable(v) for k, v in self.fields.items()}


@dataclass(frozen=True)
class Settled:
    """A message's end: one output message, or one dead letter with its reason."""

    message: StreamMessage
    fields: dict[str, str]
    dead: bool = False


@dataclass(frozen=True)
class BindingRecord:
    spec: StreamBinding
    created: float
    paused: bool


@dataclass(frozen=True)
class BindingFigures:
    """A binding's state in the broker, across every gateway that consumes it."""

    lag: int | None  # messages in the input not yet read by its group (None: the broker cannot tell)
    pending: int  # read but not yet settled
    consumers: int
    dead_letters: int  # messages in its dead-letter stream
    written: int  # output messages written, all time
    per_second: float  # output messages per second over the last 10 s
    open_groups: int  # converge groups waiting for more messages
    error: str | None  # the last failure a consumer met, until one succeeds


def _text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _printable(value: str) -> str:
    return value if _text(value) else value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
