"""The live fleet page (`GET /ui`) in a real browser: headless Chromium (Debian's), driven by
Playwright. Without the token it says so; with it, it shows every node live with its models; a node
killed turns not live on the page within 10 s, and live again once the launcher has restarted it.
Screenshots go to build/test-artifacts/."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from deploy.ephemeral_fleet import RunningFleet
from testbed.browser import chromium

pytestmark = pytest.mark.fleet

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
NODES = ("modelhost-1", "modelhost-2", "modelhost-3")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page(viewport={"width": 1280, "height": 900})
    yield opened
    opened.close()


def cell(page: Page, section: str, row: str, column: str) -> str:
    return page.locator(f'#{section} tr[data-id="{row}"] td.{column}').inner_text()


def open_with_token(page: Page, fleet: RunningFleet, refresh_s: int = 2) -> None:
    page.goto(f"{fleet.url}/ui?refresh={refresh_s}")
    page.fill("#token", fleet.token)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#nodes tbody tr[data-id]", timeout=10_000)


def test_without_the_token_the_page_says_what_it_needs(page: Page, fleet: RunningFleet) -> None:
    page.goto(f"{fleet.url}/ui")
    page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 1", timeout=10_000)
    assert "needs the token" in page.locator("#nodes .state").inner_text()
    assert page.locator("#nodes tbody tr").count() == 0


def test_the_page_shows_every_node_live_with_its_models(page: Page, fleet: RunningFleet) -> None:
    open_with_token(page, fleet)
    page.wait_for_function(
        "ids => ids.every(id => "
        "document.querySelector(`#nodes tr[data-id='${id}'] td.ready`)?.textContent === 'yes')",
        arg=list(NODES),
        timeout=20_000,
    )
    for node in NODES:
        assert cell(page, "nodes", node, "live") == "yes"
        assert "iris v1" in cell(page, "nodes", node, "models")
    assert cell(page, "models", "iris", "active") == "1"
    assert page.evaluate("sessionStorage.getItem('modelfleet-token')") == fleet.token
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "fleet-page.png", full_page=True)


def test_a_killed_node_turns_not_live_within_10_s_then_live_again(page: Page, fleet: RunningFleet) -> None:
    # Every second: the launcher restarts a killed node after 1 s, so its outage lasts a few seconds.
    open_with_token(page, fleet, refresh_s=1)
    page.wait_for_function(
        "() => document.querySelector(`#nodes tr[data-id='modelhost-2'] td.live`)?.textContent === 'yes'"
    )
    page.evaluate(
        """() => {
            window.seen = [];
            new MutationObserver(() => {
                const live = document.querySelector("#nodes tr[data-id='modelhost-2'] td.live");
                if (live) window.seen.push([Date.now(), live.textContent]);
            }).observe(document.querySelector("#nodes tbody"), { childList: true, subtree: true });
        }"""
    )
    killed_at = page.evaluate("Date.now()")
    os.kill(fleet.pid("modelhost-2"), signal.SIGKILL)
    page.wait_for_function(
        "killed => window.seen.some(([at, live]) => live === 'no' && at >= killed)",
        arg=killed_at,
        timeout=10_000,
    )
    shown_after_s = (
        page.evaluate(
            "killed => window.seen.find(([at, live]) => live === 'no' && at >= killed)[0]", killed_at
        )
        - killed_at
    ) / 1000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "fleet-page-node-down.png", full_page=True)
    page.wait_for_function(
        "killed => window.seen.some(([at, live]) => live === 'yes' && at > killed + 1000)",
        arg=killed_at,
        timeout=60_000,
    )
    print(f"\nmodelhost-2 killed: not live on the page after {shown_after_s:.1f} s, live again after restart")
    assert shown_after_s <= 10


def test_the_fleet_console_draws_its_graphs_in_chromium(page: Page, fleet: RunningFleet) -> None:
    """The console's graphs are drawn by the console library's own helper in the browser (the
    tables are filled by Prometheus, tests/fleet/test_monitoring.py): each graph gets its chart."""
    page.goto(f"{fleet.prometheus_url}/consoles/modelfleet.html")
    graphs = page.locator(".mf-graph").count()
    assert graphs >= 8
    settled = (
        "[...document.querySelectorAll('.mf-graph')].every(g => g.querySelector('svg, .prom_graph_error'))"
    )
    page.wait_for_function(f"() => {settled}", timeout=20_000)
    drawn = {
        title: page.locator(f"h3:text-is('{title}') + .mf-graph svg").count()
        for title in ("In flight at the gateway", "Nodes up and ready")
    }
    assert all(drawn.values()), drawn  # series that always exist are drawn as charts
    errors = page.locator(".mf-graph .prom_graph_error").all_inner_texts()
    assert "Error loading data" not in errors, errors  # a query the API refused
    assert page.locator("#nodes tr.node").count() >= len(NODES)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "console-fleet.png", full_page=True)
