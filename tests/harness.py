"""The documentation's commands, run as printed against a running fleet: the README and every page of
docs/."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from deploy.example_model import train_example

README = Path(__file__).resolve().parents[1] / "README.md"
DOCS = README.parent / "docs"


def documented_pages() -> list[Path]:
    """The README, then every page of docs/ in name order: the order their commands run in."""
    return [README, *sorted(DOCS.glob("*.md"))]


def documented_commands() -> tuple[list[str], list[str]]:
    """The curl lines against the inferrer (127.0.0.1:8000), each once, and the bash code blocks that
    wait for something (`until`) or write a file (`<<'EOF'`), whole: from every documented page, in
    order."""
    curls: list[str] = []
    scripts: list[str] = []
    for page in documented_pages():
        text = page.read_text()
        blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
        # A block that waits for something, or writes a file its commands read, runs whole.
        page_scripts = [block for block in blocks if "\nuntil " in block or "<<'EOF'" in block]
        in_scripts = {line.strip() for script in page_scripts for line in script.splitlines()}
        for line in (line.strip() for line in text.splitlines()):
            if line.startswith("curl ") and "127.0.0.1:8000" in line and line not in in_scripts | set(curls):
                curls.append(line)
        scripts += page_scripts
    return curls, scripts


def run_readme_curl_lines(inferrer_port: int, token: str, workdir: Path, data_dir: Path) -> None:
    """Every curl line of the README and docs/ runs as printed (port swapped, $TOKEN set,
    `.modelfleet/data/` the fleet's jobs' data directory `data_dir`) and succeeds; a code block that
    waits for something (`until`) runs whole, as one script."""
    (workdir / "iris.skops").write_bytes(train_example())
    curls, scripts = documented_commands()
    assert len(curls) >= 8 and scripts
    for command in [*curls, *(f"set -euo pipefail\n{script}" for script in scripts)]:
        command = command.replace("127.0.0.1:8000", f"127.0.0.1:{inferrer_port}")
        command = command.replace(" .modelfleet/data/", f" {data_dir}/")
        command = re.sub(
            r"(^|\$\(|\buntil )curl ", r"\1curl -sS --fail-with-body ", command, flags=re.MULTILINE
        )
        result = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=workdir,
            env={**os.environ, "TOKEN": token},
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
