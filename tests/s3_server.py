"""moto's S3 emulator (its standalone server, `moto_server`) as a process on loopback, for the storage
tests: the code under test reaches it only through its endpoint URL, as it would AWS S3 or MinIO."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from datafiles.locations import S3Settings, Storage
from deploy.ephemeral_fleet import free_ports, wait_until

REGION = "eu-central-1"  # not us-east-1: bucket creation then names its region, as elsewhere


@contextlib.contextmanager
def s3_server() -> Iterator[S3Settings]:
    (port,) = free_ports(1)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{port}", region=REGION, key_id="testing", secret="testing"
    )
    try:
        probe = Storage(Path("."), settings)
        filesystem = probe.filesystem(probe.location("s3://probe/x"))
        assert wait_until(lambda: _answers(filesystem), timeout_s=30, interval_s=0.2), "no moto_server"
        yield settings
    finally:
        server.terminate()
        server.wait(10)


def environment(settings: S3Settings) -> dict[str, str]:
    """The variables a service reads its S3 settings from (what the .env gives the fleet)."""
    assert settings.endpoint_url and settings.region and settings.key_id and settings.secret
    return {
        "AWS_ENDPOINT_URL_S3": settings.endpoint_url,
        "AWS_REGION": settings.region,
        "AWS_ACCESS_KEY_ID": settings.key_id,
        "AWS_SECRET_ACCESS_KEY": settings.secret,
    }


def _answers(filesystem: object) -> bool:
    try:
        filesystem.ls("")  # type: ignore[attr-defined]
        return True
    except Exception:
        return False


def env_lines(settings: S3Settings) -> str:
    """The store's settings as a fleet's .env lines, as a user would give them."""
    return "".join(f"{var}={value}\n" for var, value in environment(settings).items())
