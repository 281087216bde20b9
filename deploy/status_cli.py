"""`modelfleet status`: the picture the fleet page (`GET /ui`) shows, as tables in the terminal:
nodes, models, the newest jobs, graphs, watches, stream bindings and the autoscaler, read from the
inferrer's JSON routes with the .env's management token."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

NEWEST_JOBS = 10
_BAR = 20


def add_command(commands: Any) -> None:
    commands.add_parser("status", help="nodes, models, jobs, graphs, watches, streams: one table each")


def run(client: httpx.Client) -> int:
    """Print every section; 1 when the gateway could not be read at all."""
    try:
        _section("nodes", client.get("/api/v1/nodes"), _nodes)
        _section("models", client.get("/api/v1/models"), _models)
        jobs = client.get("/api/v1/jobs", params={"limit": NEWEST_JOBS})
        _section(f"jobs (newest {NEWEST_JOBS})", jobs, _jobs)
        _section("graphs", client.get("/api/v1/graphs"), lambda names: [[name] for name in names], ("graph",))
        _section("watches", client.get("/api/v1/watches"), _watches)
        _section("streams", client.get("/api/v1/streams"), lambda body: _streams(body, client))
        _section("autoscaler", client.get("/api/v1/autoscaler"), _autoscaler)
    except httpx.HTTPError as exc:
        print(f"modelfleet: the inferrer at {client.base_url} did not answer: {exc}", file=sys.stderr)
        return 1
    return 0


Rows = tuple[Sequence[str], list[list[str]]]


def _section(
    title: str, answer: httpx.Response, rows: Callable[[Any], Any], header: Sequence[str] | None = None
) -> None:
    print(f"{title.upper()}")
    if answer.status_code != 200:
        error = answer.json().get("error", answer.text) if _is_json(answer) else answer.text
        print(f"  ({answer.status_code}: {error})\n")
        return
    made = rows(answer.json())
    head, body = (header, made) if header is not None else made
    if not body:
        print("  (none)\n")
        return
    print(table(head, body) + "\n")


def table(header: Sequence[str], rows: list[list[str]]) -> str:
    """Columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return "\n".join(
        "  " + "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _is_json(answer: httpx.Response) -> bool:
    return answer.headers.get("content-type", "").startswith("application/json")


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _nodes(body: dict[str, Any]) -> Rows:
    return ("node", "live", "ready", "draining", "in flight", "models"), [
        [n["id"], _yes(n["live"]), _yes(n["ready"]), _yes(n["draining"]), str(n["in_flight"]),
         ", ".join(f"{m['name']} v{m['version']}" for m in n["models"])]
        for n in body["nodes"]
    ]  # fmt: skip


def _models(body: dict[str, Any]) -> Rows:
    return ("model", "active", "versions"), [
        [m["name"], m["active_version"] or "none", ", ".join(v["version"] for v in m["versions"])]
        for m in body["models"]
    ]


def progress(done: int, total: int) -> str:
    filled = round(_BAR * done / max(total, 1))
    return f"[{'#' * filled}{'.' * (_BAR - filled)}] {done}/{total}"


def _jobs(body: dict[str, Any]) -> Rows:
    return ("job", "target", "status", "partitions", "rows done"), [
        [j["id"], f"graph {j['graph']}" if j["graph"] else f"{j['model']} v{j['version']}", j["status"],
         progress(j["partitions"]["done"], j["partitions"]["total"]), f"{j['rows']['done']:,}"]
        for j in body["jobs"]
    ]  # fmt: skip


def _target(view: dict[str, Any]) -> str:
    return f"model {view['model']}" if view.get("model") else f"graph {view['graph']}"


def _watches(body: dict[str, Any]) -> Rows:
    return ("watch", "input", "target", "output"), [
        [w["name"], f"{w['input']} ({w['pattern']})", _target(w), w["output_location"]]
        for w in body["watches"]
    ]


def _streams(body: dict[str, Any], client: httpx.Client) -> Rows:
    rows = []
    for binding in body["streams"]:
        detail = client.get(f"/api/v1/streams/{quote(binding['name'], safe='')}")
        figures = detail.json().get("figures", {}) if detail.status_code == 200 else {}
        target = "converge" if binding.get("converge") else _target(binding)
        rows.append([
            binding["name"], f"{binding['input']} -> {binding['output']}", target,
            _figure(figures.get("lag")), _figure(figures.get("pending")),
            f"{figures.get('messages_per_second', 0):.1f}", _figure(figures.get("dead_letters")),
        ])  # fmt: skip
    return ("binding", "streams", "target", "backlog", "pending", "out/s", "dead letters"), rows


def _figure(value: int | None) -> str:
    return "?" if value is None else str(value)  # None: the broker could not tell


def _autoscaler(body: dict[str, Any]) -> Rows:
    desired = "-" if body["desired"] is None else str(body["desired"])
    return ("enabled", "nodes", "desired", "min", "max"), [
        [_yes(body["enabled"]), str(body["nodes"]), desired, str(body["min_nodes"]), str(body["max_nodes"])]
    ]
