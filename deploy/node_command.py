"""`modelfleet node`: one node of a fleet, alone on its own host.

The host needs the package and a copy of the gateway's .env: the node's entry there
(`MODELHOST_<n>_HOST/PORT`) is the address it binds, `INFERRER_HOST/PORT` the gateway's address as the
node reaches it, and the tokens and S3 settings are the fleet's. The node keeps its artifact cache on
local disk under --data-dir and runs in the foreground (Ctrl-C or SIGTERM stops it).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from pathlib import Path

from deploy.local_specs import DataDirs, LaunchError, LaunchOptions, node_spec, runs_here
from deploy.tokens import service_tokens, storage_environment, tracing_environment
from deploy.topology import Topology, TopologyError
from wire.bearer import MANAGEMENT_TOKEN_VAR


def add_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    node = commands.add_parser("node", help="run one node of the .env on this host (see docs)")
    node.add_argument("--index", type=int, required=True, help="its entry: MODELHOST_<index>_HOST/PORT")
    node.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (%(default)s)")
    node.add_argument("--sync-interval", type=float, help="seconds between checks of the desired models")


def run(args: argparse.Namespace, topology: Topology, env_file: Path) -> int:
    """Replace this process with the node's (never returns but on a refusal)."""
    entry = next((n for n in topology.nodes if n.index == args.index), None)
    if entry is None:
        raise TopologyError(f"{env_file} has no MODELHOST_{args.index}_HOST/_PORT entry")
    if not runs_here(entry):
        raise LaunchError(
            f"MODELHOST_{entry.index}_HOST={entry.host} is not an address of this host: a node binds "
            "the address of its entry (run this command on that host)"
        )
    if _is_loopback(topology.inferrer_host) and not _is_loopback(entry.host):
        raise LaunchError(
            f"INFERRER_HOST={topology.inferrer_host} is this host's own loopback: set it in the .env to "
            "the gateway's address as this host reaches it"
        )
    tokens = service_tokens(env_file)
    if MANAGEMENT_TOKEN_VAR not in tokens:
        raise LaunchError(
            f"{env_file} has no {MANAGEMENT_TOKEN_VAR}: copy the gateway's .env, tokens included"
        )
    options = LaunchOptions(
        sync_interval_s=args.sync_interval,
        modelhost_workers=args.workers,
        tokens=tokens,
        storage_env=storage_environment(env_file),
        tracing_env=tracing_environment(env_file),
    )
    dirs = DataDirs(args.data_dir.resolve())
    spec = node_spec(topology, entry, dirs, options)
    print(f"{entry.id} on {entry.url}, its gateway at {topology.inferrer_url}", flush=True)
    os.execve(spec.argv[0], list(spec.argv), {**os.environ, **spec.env})


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False
