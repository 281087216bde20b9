"""The stream broker the fleet starts itself: Debian's `redis-server`, with append-only persistence
(every write on disk before it is answered: `appendfsync always`), a password, and its data in a
folder of its own. The launcher, the compose and Swarm stacks and the tests all start it this way."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis
from dotenv import dotenv_values

from deploy.serve_command import env_name
from deploy.tokens import ensure_secret
from deploy.topology import TopologyError
from inferrer.streams.settings import STREAM_VARIABLES, StreamSettings

PORT_VARIABLE = "BROKER_PORT"  # in the .env: the launcher starts the broker on this port
PASSWORD_VARIABLE = "BROKER_PASSWORD"  # generated into the .env when it has none
URL_VARIABLE = env_name(StreamSettings, "broker_url")  # in the .env: a broker elsewhere, used as it is


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    password: str
    data_dir: Path

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@{self.host}:{self.port}/0"

    def write_config(self) -> Path:
        """Its configuration (with the password: readable by its owner only); the path to start with."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / "redis.conf"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(
            "\n".join(
                [
                    f"bind {self.host}",
                    f"port {self.port}",
                    f'requirepass "{self.password}"',
                    f"dir {self.data_dir}",
                    "appendonly yes",
                    "appendfsync always",
                    'save ""',  # the append-only file is the record; no snapshots beside it
                    "protected-mode no",  # the password protects it
                    "loglevel notice",
                    "maxmemory-policy noeviction",  # a full broker refuses writes; it never drops messages
                    "",
                ]
            )
        )
        return path

    def command(self) -> list[str]:
        return [server_binary(), str(self.write_config())]

    def answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


def local_broker(env_file: Path, host: str, data_dir: Path) -> Broker | None:
    """The broker this machine runs: when the .env sets BROKER_PORT and names no broker elsewhere."""
    values = dotenv_values(env_file)
    port = values.get(PORT_VARIABLE)
    if values.get(URL_VARIABLE) or not port:
        return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TopologyError(f"{PORT_VARIABLE} must be a port number (1-65535), not {port!r}")
    password = ensure_secret(env_file, PASSWORD_VARIABLE, "The stream broker's password")
    return Broker(host, int(port), password, data_dir)


def streams_environment(env_file: Path, broker: Broker | None) -> dict[str, str]:
    """The gateway's INFERRER_STREAMS_* variables: the .env's, and the local broker's URL."""
    values = dotenv_values(env_file)
    given = {var: value for var in STREAM_VARIABLES if (value := values.get(var))}
    return given | ({URL_VARIABLE: broker.url} if broker is not None else {})


def server_binary() -> str:
    """`redis-server` from PATH or Debian's /usr/bin (`apt-get install redis-server`)."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise FileNotFoundError("redis-server is missing: apt-get install redis-server")
    return found
