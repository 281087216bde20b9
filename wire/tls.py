"""TLS between the fleet's services: the variable that names the fleet's CA certificate (every
service reads it: its clients trust that CA only) and the client context built from it."""

from __future__ import annotations

import ssl
from pathlib import Path

TLS_CA_VAR = "MODELFLEET_TLS_CA_FILE"


def client_context(ca_file: Path | str | None) -> ssl.SSLContext | None:
    """A client context that verifies peers against the fleet's CA (host names included); None
    without a CA file: plain HTTP, or the system's trust for URLs outside the fleet."""
    if ca_file is None:
        return None
    return ssl.create_default_context(cafile=str(ca_file))
