"""A real PostgreSQL server as a process of the test, in a temporary directory on a free loopback
port (Debian's postgresql package; initdb and pg_ctl refuse root, so they run as `postgres`)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deploy.ephemeral_fleet import free_ports


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yields an SQLAlchemy URL of a fresh database; the server stops (by its data directory) after.
    Its directory is its own, outside pytest's (which only root may enter)."""
    bin_dir = postgres_bin()
    assert bin_dir is not None, "PostgreSQL is not installed (deploy/test.sh installs it)"
    (port,) = free_ports(1)
    root = Path(tempfile.mkdtemp(prefix="modelfleet-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = root / "data"
    subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                    "-t", "30", "start", "-o", options], check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
