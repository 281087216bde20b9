"""Child processes of the local launcher: started in their own session, stopped by PID."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import httpx

from datafiles.atomic_file import replace_file
from deploy.log_files import RotatingLog, log_pipe
from wire.tls import client_context

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """If the launcher itself is killed, the kernel sends SIGTERM to its children (Linux)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Role(IntEnum):
    """What a child is for; the fleet stops children in this order."""

    GATEWAY = 0  # first: no new work comes in
    BALANCER = 1
    NODE = 2
    BROKER = 3  # after the gateways: their consumers settle what they hold first
    MONITORING = 4  # last: it sees everything else stop


@dataclass
class ProcessSpec:
    name: str
    argv: Sequence[str]
    ready_url: str
    role: Role
    env: dict[str, str] = field(default_factory=dict)
    ready_headers: dict[str, str] = field(default_factory=dict)  # e.g. the nodes' credential
    stop_signal: signal.Signals = signal.SIGTERM
    ca_file: Path | None = None  # the fleet's CA, when the ready URL is https
    ready_check: Callable[[], bool] | None = None  # in place of the ready URL (a broker: no HTTP)


class ManagedProcess:
    def __init__(self, spec: ProcessSpec, log: RotatingLog, pids_dir: Path) -> None:
        self.spec = spec
        self.log = log
        self.pid_path = pids_dir / f"{spec.name}.pid"
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_copier: threading.Thread | None = None

    @property
    def log_path(self) -> Path:
        return self.log.path

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self) -> None:
        self._kill_leftovers()  # of the previous run, when this is a restart
        log_pipe_end, self._log_copier = log_pipe(self.log)
        try:
            self._popen = subprocess.Popen(
                self.spec.argv,
                env={**os.environ, **self.spec.env},
                stdout=log_pipe_end,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children in order
                preexec_fn=_die_with_parent,
            )
        finally:
            os.close(log_pipe_end)  # the child holds it now: the copier ends when the child's side does
        replace_file(self.pid_path, [f"{self._popen.pid}\n".encode()])  # never read half-written

    def exit_code(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def is_ready(self) -> bool:
        if self.spec.ready_check is not None:
            return self.spec.ready_check()
        try:
            verify = client_context(self.spec.ca_file) or True
            answer = httpx.get(
                self.spec.ready_url, headers=self.spec.ready_headers, timeout=1.0, verify=verify
            )
            return answer.status_code == 200
        except httpx.HTTPError:
            return False

    def failed_to_start(self, timeout_s: float) -> RuntimeError:
        """Why this child did not start: it exited, or was not ready within `timeout_s`."""
        why = (
            f"exited with code {self.exit_code()} while starting"
            if not self.is_running()
            else f"was not ready at {self.spec.ready_url} within {timeout_s:.0f}s"
        )
        return RuntimeError(f"{self.spec.name} {why}; last lines of {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful signal, then SIGKILL after timeout_s. Only ever this child's own PID."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.send_signal(self.spec.stop_signal)
            try:
                self._popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0fs: killing it", self.spec.name, timeout_s)
                self._popen.kill()
                self._popen.wait()
        self._kill_leftovers()
        self.pid_path.unlink(missing_ok=True)
        if self._log_copier is not None:
            self._log_copier.join(timeout=2.0)  # the child's last lines reach its log

    def _kill_leftovers(self) -> None:
        """What the child started and left behind when it died (uvicorn's worker processes or
        nginx's workers after a SIGKILL keep its port): they stay in its process group, whose id is
        the child's own PID (it was started in a session of its own)."""
        if self._popen is None or self._popen.poll() is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
