"""The `modelfleet` command: `up` runs the fleet locally, `render` writes the configs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from deploy.example_model import EXAMPLE_NAME, EXAMPLE_ROW, deploy_example
from deploy.launcher import Fleet, LaunchError, LaunchOptions, prepare
from deploy.render import render_all
from deploy.topology import (
    DEFAULT_ENV_FILE,
    Topology,
    TopologyError,
    ensure_env_file,
    load_topology,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelfleet", description=__doc__)
    parser.add_argument(
        "--env-file",
        type=Path,
        default=DEFAULT_ENV_FILE,
        help="the topology (default: %(default)s)",
    )
    parser.add_argument("--nodes", type=int, help="run this many nodes instead of the .env's")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".modelfleet"),
        help="repository, caches, rendered configs and logs (default: %(default)s)",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the whole fleet on this machine; Ctrl-C stops it")
    up.add_argument("--no-example", action="store_true", help="do not deploy the example model")
    up.add_argument(
        "--sync-interval", type=float, help="seconds between a node's checks of the desired models"
    )
    up.add_argument("--nginx-bin", help="the nginx executable, when not `nginx` on PATH")
    commands.add_parser("render", help="write nginx.conf, prometheus.yml and targets")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        topology = load_topology(ensure_env_file(args.env_file))
        if args.nodes is not None:
            topology = topology.with_node_count(args.nodes)
        if args.command == "render":
            paths = render_all(topology, args.data_dir / "run")
            print(f"rendered {paths.nginx_conf}, {paths.prometheus_yml} and {paths.targets_dir}/")
            return 0
        given = {"sync_interval_s": args.sync_interval, "nginx_bin": args.nginx_bin}
        options = LaunchOptions(**{k: v for k, v in given.items() if v is not None})
        return _up(topology, args.data_dir, args.no_example, options)
    except (TopologyError, LaunchError) as exc:
        print(f"modelfleet: {exc}", file=sys.stderr)
        return 2


def _up(topology: Topology, data_dir: Path, no_example: bool, options: LaunchOptions) -> int:
    fleet = prepare(topology, data_dir, options)
    fleet.install_signal_handlers()
    try:
        fleet.start()
        if not no_example:
            print(deploy_example(topology.inferrer_url), flush=True)
        _print_urls(topology, fleet, data_dir)
        fleet.supervise()
    except (RuntimeError, OSError) as exc:
        print(f"modelfleet: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping the fleet...", flush=True)
        fleet.stop()
        print("stopped.", flush=True)
    return 0


def _print_urls(topology: Topology, fleet: Fleet, data_dir: Path) -> None:
    names = {p.spec.name for p in fleet.processes}
    inferrer = topology.inferrer_url
    lines = [
        f"modelfleet is up with {len(topology.nodes)} nodes",
        f"  inferrer    {inferrer}  (API docs: {inferrer}/docs)",
        f"  nginx       {topology.nginx_url}",
    ]
    if "prometheus" in names:
        lines.append(f"  prometheus  http://127.0.0.1:{topology.prometheus_port}")
    lines += [
        f"  logs        {(data_dir / 'run' / 'logs').resolve()}",
        "try:",
        f"  curl -s -X POST {inferrer}/api/v1/models/{EXAMPLE_NAME}/predict "
        f"-H 'content-type: application/json' -d '{{\"instances\": [{EXAMPLE_ROW}]}}'",
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
