"""The README's commands, run as printed against a running fleet."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from deploy.example_model import train_example

README = Path(__file__).resolve().parents[1] / "README.md"


def run_readme_curl_lines(inferrer_port: int, token: str, workdir: Path, data_dir: Path) -> None:
    """Every curl line of the README runs as printed (port swapped, $TOKEN set, `.modelfleet/data/`
    the fleet's jobs' data directory `data_dir`) and succeeds; a code block that waits for something
    (`until`) runs whole, as one script."""
    (workdir / "iris.skops").write_bytes(train_example())
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    scripts = [block for block in blocks if "\nuntil " in block]
    lines = [line.strip() for line in text.splitlines()]
    curls = [
        line
        for line in lines
        if line.startswith("curl ") and "127.0.0.1:8000" in line and not any(line in s for s in scripts)
    ]
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
