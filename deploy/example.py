"""The example model, as the launcher knows it: its name, a row of it for the URLs it prints, and how
to deploy it. The training and the upload (deploy/example_model.py) run in a short process of their
own, as the compose stack's one-shot service does, so that the long-lived launcher never loads
scikit-learn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from wire.bearer import MANAGEMENT_TOKEN_VAR
from wire.tls import TLS_CA_VAR

EXAMPLE_NAME = "iris"
EXAMPLE_ROW = [5.1, 3.5, 1.4, 0.2]


def deploy_example_process(url: str, token: str | None, ca_file: Path | None = None) -> int:
    """`python -m deploy.example_model --deploy URL` as a child process; its exit status."""
    env = {**os.environ, MANAGEMENT_TOKEN_VAR: token or "", **({TLS_CA_VAR: str(ca_file)} if ca_file else {})}
    command = [sys.executable, "-m", "deploy.example_model", "--deploy", url]
    return subprocess.run(command, env=env, timeout=300, check=False).returncode
