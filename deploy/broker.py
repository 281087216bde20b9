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
from deploy.topology import Topology
from inferrer.streams.settings import STREAM_VARIABLES, StreamSettings

PASSWORD_VARIABLE = "BROKER_PASSWORD"  # generated into the .env when it has none
URL_VARIABLE = env_name(StreamSettings, "broker_url")  # in the .env: a broker elsewhere, used as it is
CONTAINER_PORT = 6379  # in its container, on the stack's network only
# Every write on disk before it is answered; the append-only file is the record (no snapshots);
# the password protects it; a full broker refuses writes, it never drops messages.
DURABILITY = (
    "appendonly yes",
    "appendfsync always",
    'save ""',
    "protected-mode no",
    "maxmemory-policy noeviction",
)


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
                    *DURABILITY,
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


def local_broker(env_file: Path, topology: Topology, data_dir: Path) -> Broker | None:
    """The broker this machine runs for the gateway: when the .env sets BROKER_PORT (and names no
    broker elsewhere); its password is generated into the .env the first time."""
    if topology.broker_port is None:
        return None
    return Broker(topology.inferrer_host, topology.broker_port, ensure_password(env_file), data_dir)


def ensure_password(env_file: Path) -> str:
    return ensure_secret(env_file, PASSWORD_VARIABLE, "The stream broker's password")


def container_command(password: str) -> list[str]:
    """The broker container's command: the same settings as `Broker.write_config`, written by its
    shell to an owner-only file in the container, with the password it reads from its environment
    or a secret's file (`password`, e.g. `$${BROKER_PASSWORD}`: compose and Swarm keep `$$` as `$`);
    the stack file never holds the password."""
    lines = [f"port {CONTAINER_PORT}", "dir /data", *DURABILITY, f'requirepass "{password}"']
    quoted = " ".join(
        "'" + line + "'" if "$" not in line else '"' + line.replace('"', '\\"') + '"' for line in lines
    )
    return [
        "sh",
        "-c",
        f"umask 077 && printf '%s\\n' {quoted} > /tmp/redis.conf && exec redis-server /tmp/redis.conf",
    ]


def container_health(password: str) -> list[str]:
    return ["CMD-SHELL", f'REDISCLI_AUTH="{password}" redis-cli -p {CONTAINER_PORT} ping | grep -q PONG']


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
