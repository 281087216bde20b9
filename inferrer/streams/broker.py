"""The broker connection, the keys this product keeps in it, and its errors as the API's.

Bindings live in the broker itself, beside the streams they consume: every gateway that reaches
the broker sees the same ones. Key names, all under `modelfleet:streams:`:
  bindings (hash: name -> spec), paused (set), errors (hash: name -> last failure),
  <name>:written (count), <name>:second:<unix s> (count, expires), <name>:reasons (hash: message
  id -> why its last try failed), <name>:open (sorted set: converge key -> opened, ms),
  <name>:group:<key> (hash: message id -> part)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from inferrer.errors import BrokerUnreachable, InvalidInput

PREFIX = "modelfleet:streams"
BINDINGS = f"{PREFIX}:bindings"
PAUSED = f"{PREFIX}:paused"
ERRORS = f"{PREFIX}:errors"
RATE_WINDOW_S = 10  # messages per second are averaged over this many seconds (the current one too)


@dataclass(frozen=True)
class BindingKeys:
    name: str

    @property
    def written(self) -> str:
        return f"{PREFIX}:{self.name}:written"

    @property
    def per_second(self) -> str:  # a prefix: the unix second follows
        return f"{PREFIX}:{self.name}:second:"

    @property
    def reasons(self) -> str:
        return f"{PREFIX}:{self.name}:reasons"

    @property
    def open_groups(self) -> str:
        return f"{PREFIX}:{self.name}:open"

    @property
    def group_prefix(self) -> str:  # a prefix: the converge key follows
        return f"{PREFIX}:{self.name}:group:"


def connect(url: str, max_connections: int = 256) -> aioredis.Redis:
    """A client whose every reply is text (bytes that are not UTF-8 kept as surrogates, for the
    consumer to dead-letter); it connects on first use, waits for a free connection rather than
    failing, and gives up on a broker silent for `socket_timeout`."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=30,
        decode_responses=True,
        encoding_errors="surrogateescape",
        socket_connect_timeout=2,
        socket_timeout=15,  # above every blocking read (1 s) and Lua step
        health_check_interval=10,
    )
    return aioredis.Redis(connection_pool=pool)


@contextlib.contextmanager
def answered() -> Iterator[None]:
    """Broker failures as the API's: 503 when it cannot be reached, 422 for a key of another type."""
    try:
        yield
    except redis_errors.AuthenticationError:
        raise BrokerUnreachable("the stream broker refused the password") from None
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
        raise BrokerUnreachable(f"the stream broker cannot be reached: {exc}") from None
    except redis_errors.ResponseError as exc:
        if str(exc).startswith("WRONGTYPE"):
            raise InvalidInput(f"a key a binding names holds something other than a stream: {exc}") from None
        raise BrokerUnreachable(f"the stream broker refused: {exc}") from None  # full, read-only, ACL


# What a consumer loop outlives: the broker gone for a while (restarted, a link down), or refusing
# for a while (its disk full, read-only after a failover).
TRANSIENT = (redis_errors.RedisError, BrokerUnreachable, OSError)
