"""MLServer 1.7 with mlserver-sklearn on the same models, in its own virtual environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import joblib

VENV = Path(".bench/mlserver-venv")
# MLServer's workers crash with current uvloop releases (SeldonIO/MLServer#2286).
PACKAGES = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]


def ensure_venv() -> Path:
    mlserver = VENV / "bin" / "mlserver"
    if not mlserver.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *PACKAGES],
            check=True,
        )
    return mlserver


class MLServer:
    """One MLServer process serving `models` ({name: estimator}); `batching` = adaptive batching."""

    def __init__(self, workdir: Path, models: dict[str, Any], ports: list[int], batching: bool) -> None:
        self.http_port = ports[0]
        workdir.mkdir(parents=True, exist_ok=True)
        settings = {
            "host": "127.0.0.1", "http_port": ports[0], "grpc_port": ports[1],
            "metrics_port": ports[2], "debug": False,
        }  # fmt: skip
        (workdir / "settings.json").write_text(json.dumps(settings))
        for name, model in models.items():
            model_dir = workdir / name
            model_dir.mkdir(exist_ok=True)
            joblib.dump(model, model_dir / "model.joblib")
            model_settings: dict[str, Any] = {
                "name": name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
            if batching:
                model_settings.update(max_batch_size=32, max_batch_time=0.005)
            (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
        self._log = (workdir / "mlserver.log").open("wb")
        self.process = subprocess.Popen(
            [str(ensure_venv()), "start", str(workdir)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self._wait_ready(list(models))

    def _wait_ready(self, names: list[str], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("mlserver exited while starting")
            try:
                if all(
                    httpx.get(f"{self.url}/v2/models/{n}/ready", timeout=2).status_code == 200 for n in names
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("mlserver was not ready in time")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        """MLServer often ignores SIGTERM: SIGINT, then SIGKILL to its own process group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def v2_body(row: list[float]) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]}
    ).encode()
