"""The stream broker the fleet starts itself: Debian's `redis-server`, with append-only persistence
(every write on disk before it is answered: `appendfsync always`), a password, and its data in a
folder of its own. The launcher, the compose and Swarm stacks and the tests all start it this way."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

DEFAULT_PORT = 6390  # not Redis's 6379: a Redis the machine runs already keeps it


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


def server_binary() -> str:
    """`redis-server` from PATH or Debian's /usr/bin (`apt-get install redis-server`)."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        raise FileNotFoundError("redis-server is missing: apt-get install redis-server")
    return found
