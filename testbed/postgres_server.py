"""A real PostgreSQL server as a process of the test, in a temporary directory on a free loopback
port (Debian's postgresql package; initdb and pg_ctl refuse root, so they run as `postgres`)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from deploy.ephemeral_fleet import free_ports


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres_server(
    host: str = "127.0.0.1", enter: Sequence[str] = (), clients: str | None = None
) -> Iterator[str]:
    """Yields an SQLAlchemy URL of a fresh database; the server stops (by its data directory) after.
    Its directory is its own, outside pytest's (which only root may enter). `enter`: a command prefix
    that runs the server elsewhere (`ip netns exec NS`: on a host of testbed/hosts.py), listening on
    `host`; `clients`: a subnet whose clients it lets in (trusted, as the test's own)."""
    bin_dir = postgres_bin()
    assert bin_dir is not None, "PostgreSQL is not installed (deploy/test.sh installs it)"
    (port,) = free_ports(1) if not enter else (5432,)
    root = Path(tempfile.mkdtemp(prefix="modelfleet-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = root / "data"
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)  # fmt: skip
    if clients is not None:
        with (data / "pg_hba.conf").open("a") as rules:
            rules.write(f"host all all {clients} trust\n")
    options = f"-p {port} -k {root} -c listen_addresses={host} -c fsync=off"
    subprocess.run([*enter, *as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                    "-w", "-t", "30", "start", "-o", options], check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@{host}:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
