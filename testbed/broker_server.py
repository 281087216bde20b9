"""A real Redis broker for the stream tests (deploy/broker.py's, as the launcher starts it) on a free
loopback port, its data in a temporary folder; it can be stopped and started again on the same data
(a broker restart)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import redis

from deploy.broker import Broker
from deploy.ephemeral_fleet import wait_until


class BrokerClient:
    """What the tests ask a broker, typed (redis-py's replies are typed loosely); `redis` for the rest."""

    def __init__(self, url: str) -> None:
        self.redis: Any = redis.Redis.from_url(url, decode_responses=True)

    def add(self, stream: str, fields: Mapping[str, str]) -> str:
        return str(self.redis.xadd(stream, dict(fields)))

    def length(self, stream: str) -> int:
        return int(self.redis.xlen(stream))

    def entries(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        return [(str(mid), dict(fields)) for mid, fields in self.redis.xrange(stream)]

    def fields(self, stream: str) -> list[dict[str, str]]:
        return [fields for _, fields in self.entries(stream)]

    def group(self, stream: str, name: str) -> dict[str, Any]:
        return next(g for g in self.redis.xinfo_groups(stream) if g["name"] == name)


class BrokerProcess:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.broker.url

    def client(self) -> BrokerClient:
        return BrokerClient(self.url)

    def start(self) -> None:
        log = (self.broker.data_dir / "log").open("ab")
        self.process = subprocess.Popen(self.broker.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def answers() -> bool:
            try:
                return bool(self.client().redis.ping())
            except redis.RedisError:
                return False

        assert wait_until(answers, timeout_s=30, interval_s=0.1), (self.broker.data_dir / "log").read_text()[
            -2000:
        ]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: Redis writes what it holds and exits; SIGKILL: it stops where it is."""
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(30)
            self.process = None


@contextlib.contextmanager
def broker_server() -> Iterator[BrokerProcess]:
    root = Path(tempfile.mkdtemp(prefix="modelfleet-broker-"))
    process = BrokerProcess(Broker("127.0.0.1", _free_port(), "broker-secret", root))
    process.start()
    try:
        yield process
    finally:
        process.stop()
        shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
