"""The configuration reference, docs/configuration.md, generated from the services' Settings classes
and the topology's `.env` entries (described by hand below: they are no Settings class).

    .venv/bin/python -m deploy.settings_reference > docs/configuration.md
    .venv/bin/python -m deploy.settings_reference --write

tests/deploy/test_settings_reference.py fails when the committed page differs from what this writes.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from datafiles.locations import S3Settings
from deploy.serve_command import env_name
from inferrer.scaling.settings import AutoscaleSettings
from inferrer.settings import InferrerSettings
from inferrer.streams.settings import StreamSettings
from modelhost.settings import ModelhostSettings
from wire.tracing_settings import TracingSettings

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
WIDTH = 110


@dataclass(frozen=True)
class Service:
    title: str
    settings: type[BaseSettings]
    where: str  # who reads the variables, and where they come from


SERVICES = (
    Service(
        "The inferrer (gateway)",
        InferrerSettings,
        "Read by each inferrer process (`inferrer/settings.py`).",
    ),
    Service(
        "The autoscaler (each gateway process)",
        AutoscaleSettings,
        "Read by each inferrer process (`inferrer/scaling/settings.py`); `modelfleet up --min-nodes N "
        "--max-nodes M` sets the first two. Autoscaling is on when the maximum exceeds the minimum "
        "(docs/autoscaling.md).",
    ),
    Service(
        "Stream bindings (each gateway process)",
        StreamSettings,
        "Read by each inferrer process (`inferrer/streams/settings.py`); `modelfleet up` sets the broker "
        "URL when the `.env` sets `BROKER_PORT` (docs/streams.md).",
    ),
    Service(
        "Each modelhost node",
        ModelhostSettings,
        "Read by each node process (`modelhost/settings.py`).",
    ),
    Service(
        "Tracing (inferrer and nodes)",
        TracingSettings,
        "Read by every gateway and node process (`wire/tracing_settings.py`); set them in the `.env` and "
        "`modelfleet up` and the compose and Swarm stacks pass them on (docs/monitoring.md#traces).",
    ),
    Service(
        "The S3-compatible store (inferrer and nodes)",
        S3Settings,
        "Read by the inferrer and every node for jobs and watches on `s3://` locations "
        "(`datafiles/locations.py`).",
    ),
)


@dataclass(frozen=True)
class Entry:
    names: str
    default: str
    description: str


# The topology: deploy/.env entries read by deploy/topology.py (the launcher, `modelfleet render` and
# `apply`, the compose file). Not a Settings class, so described here by hand.
TOPOLOGY_INTRO = """\
`deploy/.env` (copied from `deploy/.env.example` on first run) is the single source of truth for
nginx's upstream, Prometheus's targets, the launcher and the compose file (`deploy/topology.py` reads
it). The tokens live in the same file (mode 0600, ignored by git), and so may the S3 store's variables
(below). Every service starts with one command wherever it runs, `python -m deploy.serve_command
inferrer|modelhost` (uvicorn with uvloop and httptools; uvicorn's own flags set host, port and
workers): the launcher, the compose file and the images use it, and the variables they set are named
from the services' Settings classes."""

TOPOLOGY = (
    Entry(
        "`MODELHOST_<n>_HOST` / `MODELHOST_<n>_PORT`",
        "three nodes, `127.0.0.1` / `8101`, `8102`, `8103`",
        "One pair per node; the node binds that address. A host that is an address of this machine runs "
        "under `modelfleet up`; any other is another machine's, which runs it with `modelfleet node "
        "--index <n>` (docs/multihost.md). `modelfleet up --nodes N` overrides the node "
        "list (the first N entries, extended on the next ports); `modelfleet nodes add` appends a pair, "
        "`modelfleet nodes remove` removes one, and `modelfleet apply` uses the `.env`'s node list (not "
        "`--nodes`).",
    ),
    Entry(
        "`INFERRER_HOST` / `INFERRER_PORT`",
        "`127.0.0.1` / `8000`",
        "The inferrer's address: it binds it, and nodes fetch models from it there (with nodes on other "
        "machines, an address they reach).",
    ),
    Entry("`NGINX_HOST` / `NGINX_PORT`", "`127.0.0.1` / `8080`", "nginx's address (the balancer)."),
    Entry("`NGINX_EXPORTER_PORT`", "`9113`", "The port of prometheus-nginx-exporter."),
    Entry(
        "`PROMETHEUS_HOST` / `PROMETHEUS_PORT`",
        "`127.0.0.1` / `9090`",
        "Prometheus's address: `modelfleet up` runs it when the host is this machine's; on a host of its "
        "own, `modelfleet monitor` there (docs/multihost.md).",
    ),
    Entry(
        "`ALERTMANAGER`",
        "unset",
        "`HOST:PORT` of an Alertmanager that the local Prometheus sends its alerts to (`modelfleet up`). "
        "The compose stack runs its own (docs/monitoring.md#alertmanager).",
    ),
    Entry(
        "`GATEWAY_<n>_HOST`",
        "unset",
        "More gateways (n >= 2), each an inferrer and its nginx on that host, on `INFERRER_PORT` and "
        "`NGINX_PORT`: `modelfleet up` on that host runs it. They share the stores that the "
        "`INFERRER_REPOSITORY_*` and `INFERRER_JOBS_DB_URL` settings name.",
    ),
    Entry(
        "`TLS_DIR`",
        "unset",
        "TLS between every service: the folder `modelfleet certs` wrote (relative to the `.env`), with the "
        "fleet's CA and each service's certificate. Set, every service serves https only and every client "
        "verifies against that CA (docs/multihost.md).",
    ),
    Entry(
        "`FRONT_HOST` / `FRONT_PORT` / `FRONT_EXPORTER_PORT`",
        "unset / `8000` / `9114`",
        "The front balancer before every gateway (`modelfleet front` on that host), and its nginx "
        "exporter's port. With a front, nodes fetch models through it.",
    ),
    Entry(
        "`BROKER_PORT` / `BROKER_PASSWORD`",
        "`6390` / generated",
        "Stream bindings' broker: `modelfleet up` starts Debian's `redis-server` on `INFERRER_HOST` and "
        "this port (append-only, every write on disk before it is answered), the compose and Swarm "
        "stacks run it as a service. The password is generated into the `.env` on first use. Unset, or "
        "with `INFERRER_STREAMS_BROKER_URL` naming a broker elsewhere, none is started (docs/streams.md).",
    ),
    Entry(
        "`UPSTREAM_TIMEOUT_S`",
        "`10`",
        "How long nginx waits for one node's answer before it retries the prediction on another node; "
        "keep it above your slowest model's predict.",
    ),
    Entry(
        "`MAX_BODY_BYTES`",
        "`16777216` (16 MiB)",
        "The largest request body but model uploads: nginx's `client_max_body_size` and the inferrer's "
        "`INFERRER_MAX_BODY_BYTES` both come from it.",
    ),
    Entry(
        "`LOG_MAX_BYTES` / `LOG_MAX_FILES`",
        "`10485760` (10 MiB) / `3`",
        "Every service's log rotates by size, at most that many files of at most that size, under "
        "`modelfleet up` and in the compose stack alike.",
    ),
    Entry(
        "`PROMETHEUS_RETENTION_TIME` / `PROMETHEUS_RETENTION_SIZE`",
        "`15d` / `1GB`",
        "Prometheus's storage bound, locally and in compose.",
    ),
)


def _constraints(field: FieldInfo) -> list[str]:
    found = []
    for item in field.metadata:
        for kind, attribute, sign in ((Gt, "gt", ">"), (Ge, "ge", ">="), (Lt, "lt", "<"), (Le, "le", "<=")):
            if isinstance(item, kind):
                found.append(f"{sign} {getattr(item, attribute)}")
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            found.append(f"matching `{pattern}`")
    return found


def _type_name(annotation: object) -> str:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " | ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _default(name: str, field: FieldInfo) -> str:
    value = field.default
    if value is PydanticUndefined or value is None:
        return "unset"
    if isinstance(value, Path):
        home = Path.home()
        shown = f"~/{value.relative_to(home)}" if value.is_relative_to(home) else str(value)
        return f"`{shown}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int):
        if name.endswith("_bytes") and value % 2**20 == 0:
            return f"`{value}` ({value // 2**20} MiB)"
        return f"`{value}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _comments_above(settings: type[BaseSettings]) -> dict[str, str]:
    """The comment lines right above each field of a class: its description when it has no other."""
    lines, _ = inspect.getsourcelines(settings)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    found: dict[str, str] = {}
    for node in tree.body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#"):
                above.insert(0, lines[index].strip().lstrip("#").strip())
                index -= 1
            if above:
                found[node.target.id] = " ".join(above)
    return found


def describe(settings: type[BaseSettings], name: str) -> str:
    """A setting's description: its `description=`, else the comment above it; empty when neither."""
    field = settings.model_fields[name]
    return field.description or _comments_above(settings).get(name, "")


def _item(names: str, facts: str, description: str) -> str:
    text = f"- **{names}** ({facts}): {description}"
    return textwrap.fill(text, WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def _service_section(service: Service) -> list[str]:
    settings = service.settings
    doc = inspect.cleandoc(settings.__doc__ or "")
    out = [f"## {service.title}", "", textwrap.fill(f"{service.where} {doc}".strip(), WIDTH), ""]
    for name, field in settings.model_fields.items():
        kind = ", ".join([f"`{_type_name(field.annotation)}`", *_constraints(field)])
        facts = f"{kind}; default {_default(name, field)}"
        out.append(_item(f"`{env_name(settings, name)}`", facts, describe(settings, name)))
    return [*out, ""]


def generate() -> str:
    out = [
        "# Configuration",
        "",
        "<!-- Generated by `.venv/bin/python -m deploy.settings_reference --write` from the Settings",
        "     classes and deploy/settings_reference.py: edit those, not this page. -->",
        "",
        "Every setting is an environment variable. The topology and the tokens come from `deploy/.env`;",
        "the launcher (`modelfleet up`) and the compose file pass each service its variables. How to run",
        "the fleet: [operations](operations.md).",
        "",
        "## The topology (`deploy/.env`)",
        "",
        TOPOLOGY_INTRO,
        "",
    ]
    out += [_item(entry.names, f"default {entry.default}", entry.description) for entry in TOPOLOGY]
    out.append("")
    for service in SERVICES:
        out += _service_section(service)
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.settings_reference", description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {PAGE.name} instead of printing it")
    args = parser.parse_args(argv)
    text = generate()
    if args.write:
        PAGE.parent.mkdir(exist_ok=True)
        PAGE.write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
