"""The `modelfleet` command: run the fleet locally, render its configs, add and remove nodes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path

import httpx
from dotenv import dotenv_values

from deploy import autoscale_command, certs, jobs_cli, node_command, standalone, status_cli, streams_cli
from deploy.autoscaling import autoscale_plan
from deploy.broker import ensure_password, local_broker, streams_environment
from deploy.compose import COMPOSE_DIR, COMPOSE_FILE, load_compose_topology, write_compose
from deploy.compose_apply import ComposeBackend
from deploy.example import EXAMPLE_NAME, EXAMPLE_ROW, deploy_example_process
from deploy.kustomization import write_kubernetes
from deploy.launcher import Fleet, prepare, request_apply
from deploy.local_specs import DataDirs, LaunchError, LaunchOptions, local_gateway
from deploy.membership import MembershipError, apply_topology
from deploy.render import compose_placement, local_placement, render_all
from deploy.swarm import write_swarm
from deploy.tokens import (
    ensure_management_token,
    management_headers,
    service_tokens,
    storage_environment,
    tracing_environment,
)
from deploy.topology import (
    DEFAULT_ENV_FILE,
    Topology,
    TopologyError,
    add_node_entry,
    ensure_env_file,
    load_topology,
    remove_node_entry,
)
from wire.bearer import MANAGEMENT_TOKEN_VAR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelfleet", description=__doc__)
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE, help="the topology (%(default)s)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".modelfleet"),
        help="repository, caches, rendered configs and logs of the local fleet (%(default)s)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the whole fleet on this machine; Ctrl-C stops it")
    up.add_argument("--nodes", type=int, help="run this many nodes instead of the .env's")
    up.add_argument("--min-nodes", type=int, help="autoscaled: the fewest nodes (0: none when idle)")
    up.add_argument(
        "--max-nodes", type=int, help="autoscaled: the most nodes; autoscaling is on when above --min-nodes"
    )
    up.add_argument("--no-example", action="store_true", help="do not deploy the example model")
    up.add_argument(
        "--sync-interval", type=float, help="seconds between a node's checks of the desired models"
    )
    up.add_argument("--nginx-bin", help="the nginx executable, when not `nginx` on PATH")
    up.add_argument("--inferrer-workers", type=int, help="uvicorn worker processes of the inferrer (1)")
    up.add_argument("--modelhost-workers", type=int, help="uvicorn worker processes of each node (1)")

    render = commands.add_parser(
        "render", help="write the local configs, deploy/docker-compose.yml and deploy/swarm/stack.yml"
    )
    render.add_argument(
        "--kubernetes", action="store_true", help="and the manifests in deploy/kubernetes/ (kustomize)"
    )
    commands.add_parser("token", help="print the management token (for Authorization: Bearer)")

    apply = commands.add_parser("apply", help="make the running fleet match the .env's nodes")
    apply.add_argument("--compose", action="store_true", help="the docker-compose stack, not `modelfleet up`")
    apply.add_argument("--project", help="docker-compose project name (with --compose)")
    apply.add_argument("--compose-file", type=Path, default=COMPOSE_FILE, help="with --compose (%(default)s)")
    apply.add_argument("--inferrer-url", help="the inferrer's published URL (default: from the .env)")

    jobs_cli.add_commands(commands)
    status_cli.add_command(commands)
    node_command.add_command(commands)
    autoscale_command.add_command(commands)
    streams_cli.add_command(commands)
    commands.add_parser(
        "migrate", help="copy this machine's repository and job store into the .env's shared stores"
    )
    standalone.add_commands(commands)
    certs.add_command(commands)

    nodes = commands.add_parser("nodes", help="list, add or remove node entries in the .env")
    node_commands = nodes.add_subparsers(dest="nodes_command", required=True)
    node_commands.add_parser("list")
    add = node_commands.add_parser("add", help="append a node entry (then: modelfleet apply)")
    add.add_argument("--host", help="the node's host (default: 127.0.0.1)")
    add.add_argument("--port", type=int, help="the node's port (default: after the last node's)")
    remove = node_commands.add_parser("remove", help="remove a node entry (then: modelfleet apply)")
    remove.add_argument("node", nargs="?", help="node id, e.g. modelhost-4 (default: the last)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    env_file = ensure_env_file(args.env_file)
    try:
        if args.command == "nodes":
            return _nodes(args, env_file)
        if args.command in ("up", "render", "token") and (token := ensure_management_token(env_file)):
            print(f"generated a management token and stored it in {env_file}:\n  {token}", flush=True)
        if args.command in ("render", "token") and load_topology(env_file).broker_port is not None:
            ensure_password(env_file)  # the stacks' broker reads it from the .env
        if args.command == "token":
            print(dotenv_values(env_file)[MANAGEMENT_TOKEN_VAR])
            return 0
        if args.command == "migrate":
            from deploy import migrate  # loads the repository (scikit-learn): never in the launcher

            return migrate.run(env_file, args.data_dir)
        topology = load_topology(env_file)
        if args.command == "render":
            run_dir = args.data_dir / "run"
            render_all(topology, local_placement(topology, run_dir))
            write_compose(topology)
            stack = write_swarm(topology, env_file)
            if args.kubernetes:
                print(f"rendered the Kubernetes manifests in {write_kubernetes(topology, env_file)}/")
            print(f"rendered the local configs in {run_dir}/, {COMPOSE_FILE} with {COMPOSE_DIR}/, "
                  f"and the Swarm stack {stack}")  # fmt: skip
            return 0
        if args.command == "apply":
            return _apply(args, topology)
        if args.command == "node":
            return node_command.run(args, topology, env_file)
        if args.command == "autoscale":
            return autoscale_command.run(args, topology, env_file)
        if args.command == "streams":
            return streams_cli.run(args, topology, env_file)
        if args.command == "certs":
            return certs.run(topology, env_file, args.renew)
        if args.command in ("front", "monitor"):
            return standalone.run(args.command, topology, args.data_dir)
        if args.command in ("jobs", "status"):
            with httpx.Client(
                base_url=topology.inferrer_url,
                headers=management_headers(env_file),
                timeout=600,
                verify=certs.verify(topology),
            ) as client:
                return jobs_cli.run(args, client) if args.command == "jobs" else status_cli.run(client)
        topology = local_gateway(topology)
        if args.nodes is not None:
            if args.nodes < 1 or args.min_nodes is not None or args.max_nodes is not None:
                raise TopologyError("--nodes N (N >= 1) is a fixed fleet: without --min-nodes/--max-nodes")
            topology = topology.with_node_count(args.nodes)
        plan = autoscale_plan(env_file, topology, args.min_nodes, args.max_nodes)
        topology = plan.initial
        broker = local_broker(env_file, topology, DataDirs(args.data_dir).broker)
        given = {
            "sync_interval_s": args.sync_interval,
            "nginx_bin": args.nginx_bin,
            "inferrer_workers": args.inferrer_workers,
            "modelhost_workers": args.modelhost_workers,
            "tokens": service_tokens(env_file),
            "storage_env": storage_environment(env_file),
            "tracing_env": tracing_environment(env_file),
            "autoscale_env": plan.gateway_env,
            "node_pool": plan.pool,
            "streams_env": streams_environment(env_file, broker),
            "broker": broker,
        }
        options = LaunchOptions(**{k: v for k, v in given.items() if v is not None})
        return _up(prepare(topology, env_file, args.data_dir, options), args.no_example)
    except (TopologyError, LaunchError, MembershipError) as exc:
        print(f"modelfleet: {exc}", file=sys.stderr)
        return 2


def _nodes(args: argparse.Namespace, env_file: Path) -> int:
    if args.nodes_command == "add":
        node = add_node_entry(env_file, args.host, args.port)
        print(f"added {node.id} at {node.host}:{node.port} to {env_file}; run `modelfleet apply`")
    elif args.nodes_command == "remove":
        node = remove_node_entry(env_file, args.node)
        print(f"removed {node.id} from {env_file}; `modelfleet apply` drains and stops it")
    else:
        for node in load_topology(env_file).nodes:
            print(f"{node.id}\t{node.host}:{node.port}")
    return 0


def _apply(args: argparse.Namespace, topology: Topology) -> int:
    if not args.compose:
        result = request_apply(args.data_dir)
        print(json.dumps(result))
        return 0 if result.get("ok") else 1
    # The compose file in use lists the nodes running now; the .env says what they should be.
    running = load_compose_topology(topology, args.compose_file)
    backend = ComposeBackend(args.compose_file, args.project)
    inferrer = args.inferrer_url or f"http://127.0.0.1:{topology.inferrer_port}"
    placement = compose_placement(topology, args.compose_file.parent / "compose")
    with httpx.Client(base_url=inferrer, headers=management_headers(args.env_file)) as client:
        change = apply_topology(running, topology, placement, backend, client)
    print(json.dumps({"ok": True, "added": change.added, "removed": change.removed}))
    return 0


def _up(fleet: Fleet, no_example: bool) -> int:
    fleet.install_signal_handlers()
    try:
        fleet.start()
        if not no_example:
            _deploy_example_supervised(fleet)
        if fleet.stopping.is_set():
            return 0
        _print_urls(fleet)
        fleet.supervise()
    except (RuntimeError, OSError) as exc:
        print(f"modelfleet: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping the fleet...", flush=True)
        fleet.stop()
        print("stopped.", flush=True)
    return 0


def _deploy_example_supervised(fleet: Fleet) -> None:
    """Deploy the example while the fleet is supervised: a child that dies meanwhile (the gateway
    killed a second after it started) is restarted, and the deploy tries again until it answers."""
    token = fleet.options.tokens.get(MANAGEMENT_TOKEN_VAR)
    outcome: list[int] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            deploy_example_process(fleet.topology.inferrer_url, token, certs.ca_file(fleet.topology))
        ),
        name="example-model",
        daemon=True,
    )
    worker.start()
    fleet.supervise(until=lambda: not worker.is_alive())
    if outcome != [0] and not fleet.stopping.is_set():
        raise RuntimeError("the example model could not be deployed (see above)")


def _print_urls(fleet: Fleet) -> None:
    topology = fleet.topology
    names = {p.spec.name for p in fleet.processes}
    inferrer = topology.inferrer_url
    ca = certs.ca_file(topology)
    cacert = f" --cacert {ca}" if ca else ""
    lines = [
        f"modelfleet is up with {len(topology.nodes)} nodes",
        f"  inferrer    {inferrer}  (API docs: {inferrer}/docs)",
        f"  nginx       {topology.nginx_url}",
    ]
    lines.append(f"  fleet page  {inferrer}/ui  (`modelfleet status` in the terminal)")
    if "prometheus" in names:
        prometheus = f"{topology.scheme}://{topology.prometheus_host}:{topology.prometheus_port}"
        lines.append(f"  prometheus  {prometheus}  (consoles: {prometheus}/consoles/modelfleet.html)")
    lines += [
        f"  logs        {fleet.dirs.logs}",
        "try:",
        f"  curl -s{cacert} -X POST {inferrer}/api/v1/models/{EXAMPLE_NAME}/predict "
        f"-H 'content-type: application/json' -d '{{\"instances\": [{EXAMPLE_ROW}]}}'",
        "management calls (deploy, delete, versions, nodes) need the token:",
        '  -H "Authorization: Bearer $(.venv/bin/modelfleet token)"',
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
