"""The "Run with docker-compose" section of docs/operations.md, run as printed on a machine where no
engine runs.

In a copy of this checkout (a clone the test command has set up): the setup line (which installs and
starts the engine), the image build, `modelfleet render`, `docker-compose up -d`; then every curl
line of the README and docs/ against the stack; then `down` and the engine's stop command, after
which nothing of the engine is left on the host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from deploy.ephemeral_fleet import port_is_bound
from tests.compose.conftest import ENGINE_SCRIPT, engine_answers
from tests.harness import DOCS, README, run_readme_curl_lines
from wire.bearer import MANAGEMENT_TOKEN_VAR

pytestmark = pytest.mark.compose

ROOT = README.parent
OPERATIONS = DOCS / "operations.md"  # its docker-compose section
ENGINE_PROCESSES = {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy"}
ENGINE_LINKS = ("docker0", "docker_gwbridge")
STATE_FILE = Path("/var/lib/modelfleet/host-network.state")  # deploy/docker/engine.sh


def compose_section_blocks() -> list[list[str]]:
    """The command lines of each bash block of the docker-compose section, in order."""
    text = OPERATIONS.read_text()
    section = text[text.index("## Run with docker-compose") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def checkout_copy(target: Path) -> Path:
    """The files of this checkout that git tracks or would track: what a fresh clone holds, with the
    .venv the test command set up as hard links (no file is written through one: pip and Python
    write new files). A fresh machine's setup is what the test command itself just ran; here the
    setup line runs as it does on a set-up machine, in seconds rather than minutes."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    venv = ROOT / ".venv"
    # Not a link (a second checkout's .venv may be one): the copy would install into its target.
    if venv.is_dir() and not venv.is_symlink() and os.stat(venv).st_dev == os.stat(target).st_dev:
        subprocess.run(["cp", "-al", str(venv), str(target / ".venv")], check=True)
    return target


def engine_processes() -> list[str]:
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue  # the process ended while we looked
        if name in ENGINE_PROCESSES:
            found.append(f"{name} (pid {comm.parent.name})")
    return found


def host_network() -> dict[str, object]:
    """What the engine changes on the host and its stop command must put back or remove."""
    rules = "".join(
        subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=True).stdout
        for table in ("filter", "nat")
    )
    return {
        "forward_policy": re.search(r"^-P FORWARD (\w+)$", rules, flags=re.M)[1],  # type: ignore[index]
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "links": [link for link in ENGINE_LINKS if Path(f"/sys/class/net/{link}").exists()],
        "engine_rules": [line for line in rules.splitlines() if "DOCKER" in line or "docker" in line],
    }


def saved_host_network() -> dict[str, str]:
    """What setup-docker.sh noted before an engine first touched the host, if an engine runs now."""
    if not STATE_FILE.exists():
        return {}
    return dict(line.split("=", 1) for line in STATE_FILE.read_text().splitlines() if "=" in line)


def run_line(line: str, cwd: Path, timeout_s: float = 1200) -> str:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", line], cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{line}\nexit {result.returncode}\n{output[-4000:]}"
    print(f"{time.monotonic() - started:6.1f}s  {line}")
    return output


def test_readme_compose_section_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start_block, stop_block = compose_section_blocks()[-2:]
    assert any("setup-docker.sh" in line for line in start_block), start_block
    assert any(line.startswith("docker-compose") and " up " in line for line in start_block), start_block
    assert any(" down" in line for line in stop_block), stop_block
    assert any("engine.sh stop" in line for line in stop_block), stop_block
    assert not port_is_bound(8000) and not port_is_bound(9090), "ports 8000 and 9090 are in use"

    # A machine where no engine runs: stop the one an earlier test (or the test command) started.
    monkeypatch.delenv("DOCKER_HOST", raising=False)  # the documented commands use the default socket
    saved = saved_host_network()
    stopped = subprocess.run(
        ["bash", str(ENGINE_SCRIPT), "stop"], capture_output=True, text=True, timeout=120
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not engine_answers(), "an engine that deploy/docker/engine.sh did not start is running"
    assert engine_processes() == []
    before = host_network()
    # Nothing of an engine on the host, and the settings from before the first engine started.
    assert before["links"] == [] and before["engine_rules"] == [], before
    if saved:
        assert (before["forward_policy"], before["ip_forward"]) == (
            saved["forward_policy"],
            saved["ip_forward"],
        )

    checkout = checkout_copy(tmp_path / "modelfleet")
    try:
        for line in start_block:
            run_line(line, checkout)
        token = dotenv_values(checkout / "deploy" / ".env")[MANAGEMENT_TOKEN_VAR]
        assert token
        # `up -d` has returned: every curl line answers now, the example model's included.
        # The jobs' data directory is the `jobs` volume: the docker-compose section says where.
        jobs_volume = subprocess.run(
            ["docker", "volume", "inspect", "-f", "{{.Mountpoint}}", "deploy_jobs"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
        run_readme_curl_lines(8000, token, tmp_path, Path(jobs_volume))
        print("every curl line of the README and docs/ answered 200 against the compose stack")
    finally:
        for line in stop_block:
            if "engine.sh stop" in line:
                # `down` keeps the models volume, as the section says; the test removes it too.
                run_line("docker-compose -f deploy/docker-compose.yml down -v", checkout)
            run_line(line, checkout)

    assert not engine_answers()
    assert engine_processes() == [], engine_processes()
    after = host_network()
    assert after == before, f"the host's network before the engine: {before}, after its stop: {after}"
    assert not STATE_FILE.exists()  # put back, and forgotten
