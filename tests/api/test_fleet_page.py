"""`GET /ui` serves the fleet page's three files from the package, open (the data routes hold the
token checks), with a policy that allows this gateway's own files and routes only: no CDN."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inferrer.api.ui import UI_DIR
from tests.in_process import in_process_fleet

pytestmark = pytest.mark.anyio


async def test_the_page_and_its_files_are_served_with_a_same_origin_policy(tmp_path: Path) -> None:
    async with in_process_fleet(tmp_path, nodes=1) as fleet:
        page = await fleet.gateway.get("/ui")
        script = await fleet.gateway.get("/ui/fleet.js")
        style = await fleet.gateway.get("/ui/fleet.css")
        other = await fleet.gateway.get("/ui/other.js")
        document = (await fleet.gateway.get("/openapi.json")).json()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert script.headers["content-type"].startswith("text/javascript") and "sessionStorage" in script.text
    assert style.headers["content-type"].startswith("text/css")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert other.status_code == 404 and other.headers["content-type"] == "application/json"
    assert not any(path.startswith("/ui") for path in document["paths"])


def test_the_page_loads_nothing_from_elsewhere() -> None:
    for file in UI_DIR.iterdir():
        assert not re.search(r"(https?:)?//[a-z]", file.read_text()), f"{file.name} names another origin"
    assert {file.name for file in UI_DIR.iterdir()} == {"index.html", "fleet.js", "fleet.css"}
