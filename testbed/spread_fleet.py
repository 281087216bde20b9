"""A fleet spread over hosts (network namespaces, testbed/hosts.py), started as a user would start it
from the docs: a store host (PostgreSQL and SeaweedFS), two gateway hosts (`modelfleet up`), three
node hosts (`modelfleet node`), a front host (`modelfleet front`), a monitoring host (`modelfleet
monitor`), and a client host that every request comes from."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datafiles.locations import S3Settings
from testbed.hosts import SUBNET, Hosts, hosts, stop_process
from testbed.postgres_server import postgres_server
from testbed.s3_server import s3_server

HOSTS = ("front", "gateway1", "gateway2", "node1", "node2", "node3", "store", "monitor", "client")
GATEWAYS, NODES = ("gateway1", "gateway2"), ("node1", "node2", "node3")
MODELFLEET = [sys.executable, "-m", "deploy.cli"]
BUCKET = "fleet"
# Settings of the gateways for these tests: the prediction cache on, partition claims that lapse
# soon after a gateway is cut off, watched prefixes listed every second.
GATEWAY_ENV = {
    "INFERRER_PREDICTION_CACHE_SIZE": "10000",
    "INFERRER_JOBS_LEASE_S": "4",
    "INFERRER_WATCH_INTERVAL_S": "1",
    "INFERRER_WATCH_SETTLE_S": "0.5",
}

_S3_READY = """
import sys
from pathlib import Path
from datafiles.locations import S3Settings, Storage
settings = S3Settings(endpoint_url=sys.argv[1], region=sys.argv[2], key_id="testing", secret="testing")
storage = Storage(Path("."), settings)
location = storage.location(f"s3://{sys.argv[3]}/ready")
filesystem = storage.filesystem(location)
if not filesystem.exists(sys.argv[3]):
    filesystem.mkdir(sys.argv[3])
storage.write_atomic(location, b"ready")
assert storage.read_all(location) == b"ready"
"""


_S3_PUT = """
import sys
from pathlib import Path
from datafiles.locations import S3Settings, Storage
settings = S3Settings(endpoint_url=sys.argv[1], region=sys.argv[2], key_id="testing", secret="testing")
storage = Storage(Path("."), settings)
storage.write_atomic(storage.location(sys.argv[3]), Path(sys.argv[4]).read_bytes())
"""


@dataclass
class SpreadFleet:
    net: Hosts
    root: Path
    token: str
    s3: S3Settings
    tls: bool = True
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ca(self) -> Path:
        """The fleet CA's certificate (`modelfleet certs`): every service serves TLS."""
        return self.root / "certs" / "ca.crt"

    def url(self, host: str) -> str:
        """The front's, a gateway's or a node's base URL."""
        port = {"front": 8000, "gateway1": 8000, "gateway2": 8000, "monitor": 9090}.get(host, 8101)
        return f"{'https' if self.tls else 'http'}://{self.net.address(host)}:{port}"

    @property
    def trust(self) -> list[str]:
        """curl's arguments that trust the fleet's CA (none without TLS)."""
        return ["--cacert", str(self.ca)] if self.tls else []

    def call(
        self, method: str, url: str, body: Any = None, *curl: str, timeout_s: float = 60
    ) -> tuple[int, Any]:
        """One JSON call from the client host: (status, parsed body or text)."""
        args = [*self.trust, "-X", method, "-H", f"Authorization: Bearer {self.token}", *curl]
        if body is not None:
            args += ["-H", "content-type: application/json", "-d", json.dumps(body)]
        status, text = self.net.curl("client", *args, url, timeout_s=timeout_s)
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def put_object(self, url: str, data: bytes) -> None:
        """An object in the store host's bucket, put from the client host."""
        staged = self.root / f"put-{secrets.token_hex(4)}"
        staged.write_bytes(data)
        self.net.python("client", _S3_PUT, str(self.s3.endpoint_url), str(self.s3.region), url, str(staged))
        staged.unlink()

    def start_node(self, host: str) -> None:
        index = NODES.index(host) + 1
        argv = [*self._cli(host), "node", "--index", str(index), "--sync-interval", "1"]
        self.nodes[host] = self.net.start(host, argv, str(self.root / f"{host}.log"))

    def stop_node(self, host: str) -> None:
        stop_process(self.nodes.pop(host))

    def cache_dir(self, host: str) -> Path:
        return self.root / host / "cache" / f"modelhost-{NODES.index(host) + 1}"

    def log(self, host: str) -> str:
        with contextlib.suppress(OSError):
            return (self.root / f"{host}.log").read_text(errors="replace")[-3000:]
        return ""

    def _cli(self, host: str) -> list[str]:
        return [*MODELFLEET, "--env-file", str(self.root / "fleet.env"), "--data-dir", str(self.root / host)]


def env_text(net: Hosts, token: str, database: str, s3: S3Settings, tls: bool) -> str:
    lines = [
        f"INFERRER_HOST={net.address('gateway1')}", "INFERRER_PORT=8000",
        f"NGINX_HOST={net.address('gateway1')}", "NGINX_PORT=8080", "NGINX_EXPORTER_PORT=9113",
        f"GATEWAY_2_HOST={net.address('gateway2')}",
        f"FRONT_HOST={net.address('front')}", "FRONT_PORT=8000",
        f"PROMETHEUS_HOST={net.address('monitor')}", "PROMETHEUS_PORT=9090",
        "UPSTREAM_TIMEOUT_S=2", *(["TLS_DIR=certs"] if tls else []),
        *(f"MODELHOST_{i}_HOST={net.address(h)}\nMODELHOST_{i}_PORT=8101" for i, h in enumerate(NODES, 1)),
        f"MODELFLEET_MANAGEMENT_TOKEN={token}",
        f"INFERRER_REPOSITORY_DB_URL={database}", f"INFERRER_JOBS_DB_URL={database}",
        f"INFERRER_REPOSITORY_ARTIFACTS_URL=s3://{BUCKET}/models",
        f"AWS_ENDPOINT_URL_S3={s3.endpoint_url}", f"AWS_REGION={s3.region}",
        f"AWS_ACCESS_KEY_ID={s3.key_id}", f"AWS_SECRET_ACCESS_KEY={s3.secret}",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def spread_fleet(
    root: Path, tls: bool = True, gateway_env: dict[str, str] | None = None
) -> Iterator[SpreadFleet]:
    """The fleet, up; `tls`: every service serves TLS only (`modelfleet certs`, `TLS_DIR`);
    `gateway_env`: the gateways' settings (GATEWAY_ENV by default)."""
    with hosts(*HOSTS) as net:
        store = net.address("store")
        enter = net.command("store", [])

        def stores_objects(settings: S3Settings) -> bool:
            argv = [sys.executable, "-c", _S3_READY, str(settings.endpoint_url), str(settings.region), BUCKET]
            return net.run("client", argv).returncode == 0

        with (
            postgres_server(store, enter, clients=f"{SUBNET}.0/24") as database,
            s3_server(store, enter, ready=stores_objects) as s3,
        ):
            token = secrets.token_urlsafe(24)
            (root / "fleet.env").write_text(env_text(net, token, database, s3, tls))
            (root / "fleet.env").chmod(0o600)
            fleet = SpreadFleet(net, root, token, s3, tls)
            made = subprocess.run(
                [*fleet._cli("client"), "certs"], capture_output=True, text=True, timeout=60
            )
            assert made.returncode == 0, made.stderr
            try:
                for host in GATEWAYS:
                    argv = [*fleet._cli(host), "up", "--no-example", "--sync-interval", "1"]
                    net.start(host, argv, str(root / f"{host}.log"), env=gateway_env or GATEWAY_ENV)
                for host in NODES:
                    fleet.start_node(host)
                net.start("front", [*fleet._cli("front"), "front"], str(root / "front.log"))
                net.start("monitor", [*fleet._cli("monitor"), "monitor"], str(root / "monitor.log"))
                for host in (*GATEWAYS, *NODES, "front"):
                    try:
                        net.wait_for("client", f"{fleet.url(host)}/health/ready", 180, *fleet.trust)
                    except AssertionError as exc:
                        raise AssertionError(f"{exc}\n{fleet.log(host)}") from None
                yield fleet
            finally:
                net.stop_all()  # before the stores: the fleet's last writes reach them
