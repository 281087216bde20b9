"""The README's screenshots of the fleet page and the fleet console, from a fleet at work.

    .venv/bin/python -m bench.readme_screenshots [--seconds 60]

Starts a fleet (`modelfleet up`: 3 nodes, the broker, the example model), sends predictions for
`--seconds` (wrk, 8 connections), submits a batch job and makes a stream binding
meanwhile, then takes both pages in headless Chromium into docs/images/.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from pathlib import Path

import httpx
import orjson

from bench.loadgen import run_wrk
from deploy.ephemeral_fleet import free_ports, start_fleet
from deploy.example import EXAMPLE_ROW
from testbed.browser import chromium

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    (broker,) = free_ports(1)
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), nodes=3, env_lines=f"BROKER_PORT={broker}\n")
        try:
            (fleet.data_dir / "data").mkdir(parents=True, exist_ok=True)
            (fleet.data_dir / "data" / "rows.jsonl").write_text(f"{EXAMPLE_ROW}\n" * 200_000)
            body = {"name": "iris-scores", "input": "iris-rows", "output": "iris-scores", "model": "iris"}
            httpx.post(f"{fleet.url}/api/v1/streams", json=body, headers=fleet.auth, timeout=30)
            load = threading.Thread(
                target=run_wrk,
                args=(
                    f"{fleet.url}/api/v1/models/iris/predict",
                    orjson.dumps({"instances": [EXAMPLE_ROW]}),
                    8,
                    args.seconds,
                ),
            )
            load.start()
            messages = {"messages": [{"key": str(i), "instances": [EXAMPLE_ROW]} for i in range(500)]}
            httpx.post(f"{fleet.url}/api/v1/streams/iris-scores/messages", json=messages, headers=fleet.auth)
            job = {"model": "iris", "input": "rows.jsonl", "partition_bytes": 256 * 1024}
            httpx.post(f"{fleet.url}/api/v1/jobs", json=job, headers=fleet.auth, timeout=30)
            load.join()
            with chromium() as browser:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"{fleet.url}/ui")
                page.fill("#token", fleet.token)
                page.click("#token-form button[type=submit]")
                page.wait_for_selector("#nodes tbody tr[data-id]")
                page.wait_for_timeout(2500)  # one more refresh: every section filled
                page.screenshot(path=IMAGES / "fleet-page.png", full_page=True)
                page.goto(f"{fleet.prometheus_url}/consoles/modelfleet.html")
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.mf-graph')]"
                    ".every(g => g.querySelector('svg, .prom_graph_error'))"
                )
                page.screenshot(path=IMAGES / "console-fleet.png", full_page=True)
        finally:
            fleet.stop()
    print(f"wrote {IMAGES / 'fleet-page.png'} and {IMAGES / 'console-fleet.png'}")


if __name__ == "__main__":
    main()
