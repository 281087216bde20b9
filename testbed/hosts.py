"""Hosts as network namespaces, for tests of a fleet spread over several hosts.

Each host is a namespace with its loopback and one veth link to a bridge in the root namespace,
with an address in a private test subnet. The root namespace has no address on that bridge: every
client of a host address runs inside a namespace (`Hosts.run`), never from the root namespace, whose
default route would carry such traffic off the machine. Everything made here (namespaces, links,
the bridge, a FORWARD rule that lets the bridge's frames through whatever a Docker engine set) is
removed when the `hosts` context ends, failed test or not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

SUBNET = "10.231.0"  # a private /24 of the tests' own


@dataclass
class Hosts:
    names: list[str]
    tag: str  # unique to this test run: interface and namespace names carry it
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def namespace(self, host: str) -> str:
        return f"mf{self.tag}-{host}"

    def address(self, host: str) -> str:
        return f"{SUBNET}.{self.names.index(host) + 2}"

    def command(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def start(
        self, host: str, argv: list[str], log: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """A long-running process on a host (stopped by PID when the context ends)."""
        with open(log, "ab") as out:
            process = subprocess.Popen(
                self.command(host, argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **(env or {})},
            )  # fmt: skip
        self.processes.append(process)
        return process

    def run(self, host: str, argv: list[str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(host, argv), capture_output=True, text=True, timeout=timeout_s)

    def curl(self, host: str, *args: str, timeout_s: float = 30) -> tuple[int, str]:
        """(HTTP status, body) of one curl from a host; status 0 when nothing answered."""
        done = self.run(
            host,
            ["curl", "-sS", "--max-time", str(timeout_s), "-o", "-", "-w", "\n%{http_code}", *args],
            timeout_s + 5,
        )
        body, _, status = done.stdout.rpartition("\n")
        return int(status or 0), body

    def wait_for(self, host: str, url: str, timeout_s: float = 90, *args: str) -> None:
        """Until `url` answers 200 to a client on `host`."""
        deadline = time.monotonic() + timeout_s
        status, body = 0, ""
        while time.monotonic() < deadline:
            status, body = self.curl(host, *args, url, timeout_s=5)
            if status == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"{url} from {host}: {status} {body[:500]}")

    def link(self, host: str, up: bool) -> None:
        """Take a host's only network link down (it is cut off from every other host) or back up."""
        _ip("-n", self.namespace(host), "link", "set", "eth0", "up" if up else "down")

    def python(self, host: str, code: str, *args: str, timeout_s: float = 120) -> str:
        """Run Python on a host (this checkout's interpreter and packages); its output, or an error."""
        done = self.run(host, [sys.executable, "-c", code, *args], timeout_s)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)
        self.processes.clear()


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30) -> int | None:
    """SIGTERM by PID, then SIGKILL after `timeout_s`."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@contextlib.contextmanager
def hosts(*names: str) -> Iterator[Hosts]:
    tag = secrets.token_hex(3)  # never another run's names, even one that leaked
    made = Hosts(list(names), tag)
    bridge = f"mfb{tag}"
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("link", "set", bridge, "up")
        subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
        for i, host in enumerate(names):
            namespace, outside = made.namespace(host), f"mfv{tag}x{i}"
            _ip("netns", "add", namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", namespace, "addr", "add", f"{made.address(host)}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        yield made
    finally:
        try:
            made.stop_all()
        finally:
            for host in names:  # what still runs in it goes first; its removal removes its veth pair
                pids = subprocess.run(
                    ["ip", "netns", "pids", made.namespace(host)], capture_output=True, text=True
                )
                for pid in pids.stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                subprocess.run(["ip", "netns", "del", made.namespace(host)], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        subprocess.run(["iptables", "-D", *rule], capture_output=True)
