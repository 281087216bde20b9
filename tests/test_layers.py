"""Imports go one way inside the inferrer: api -> streams, watches -> jobs -> graphs -> dataplane -> state,
and
control -> state; the data plane and the control plane both use shared state and never each other.
The two services never import each other, the shared packages (wire, artifacts, metrics,
datafiles) import neither service, and the benchmarks import no test.

A layer may import its own modules and the ones below it; the inferrer's errors and settings are the
floor every layer stands on; the app factory, its systems and its clients' owner compose the layers and may
import them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = {"inferrer.errors", "inferrer.settings"}
ALLOWED = {
    "inferrer.state": {"inferrer.state"} | FLOOR,
    "inferrer.control": {"inferrer.control", "inferrer.state"} | FLOOR,
    "inferrer.dataplane": {"inferrer.dataplane", "inferrer.state"} | FLOOR,
    "inferrer.graphs": {"inferrer.graphs", "inferrer.dataplane", "inferrer.state"} | FLOOR,
    "inferrer.jobs": {"inferrer.jobs", "inferrer.graphs", "inferrer.dataplane", "inferrer.state"} | FLOOR,
    "inferrer.watches": {
        "inferrer.watches",
        "inferrer.jobs",
        "inferrer.graphs",
        "inferrer.dataplane",
        "inferrer.state",
    }
    | FLOOR,
    "inferrer.streams": {
        "inferrer.streams",
        "inferrer.jobs",
        "inferrer.graphs",
        "inferrer.dataplane",
        "inferrer.state",
    }
    | FLOOR,
    "inferrer.scaling": {"inferrer.scaling", "inferrer.control", "inferrer.state"} | FLOOR,
    "inferrer.api": {
        "inferrer.api",
        "inferrer.scaling",
        "inferrer.streams",
        "inferrer.graphs",
        "inferrer.watches",
        "inferrer.jobs",
        "inferrer.dataplane",
        "inferrer.control",
        "inferrer.state",
    }
    | FLOOR,
    "inferrer.errors": set(),
    "inferrer.settings": set(),
}
SERVICES = ("inferrer", "modelhost")
SHARED = ("wire", "artifacts", "metrics", "datafiles")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_inferrer_layers_import_one_way() -> None:
    breaches = []
    for path in sorted((ROOT / "inferrer").rglob("*.py")):
        module = _module(path)
        layer = next((layer for layer in ALLOWED if _within(module, layer)), None)
        if layer is None:
            continue  # the composition root: app.py, systems.py, fleet_clients.py
        for imported in _imports(path):
            if _within(imported, "inferrer") and not any(_within(imported, ok) for ok in ALLOWED[layer]):
                breaches.append(f"{module} imports {imported}")
    assert breaches == []
    assert {p.name for p in (ROOT / "inferrer").iterdir() if p.suffix == ".py"} == {
        "__init__.py", "app.py", "errors.py", "fleet_clients.py", "settings.py", "systems.py",
    }, "a new inferrer module belongs in a layer (api, watches, jobs, dataplane, control, state)"  # fmt: skip


def test_services_and_shared_packages_keep_apart() -> None:
    breaches = []
    for package in (*SERVICES, *SHARED):
        forbidden = [p for p in (*SERVICES, "deploy") if p != package]
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in _imports(path):
                if any(_within(imported, other) for other in forbidden):
                    breaches.append(f"{_module(path)} imports {imported}")
    assert breaches == []


def test_benchmarks_import_no_test() -> None:
    breaches = [
        f"{_module(path)} imports {imported}"
        for path in sorted((ROOT / "bench").rglob("*.py"))
        for imported in _imports(path)
        if _within(imported, "tests")
    ]
    assert breaches == []
