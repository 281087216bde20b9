"""How every service process is started, declared once: the uvicorn command line of the local
launcher, of the compose file and of the images (their CMD runs `python -m deploy.serve_command`),
and the environment variable names, taken from the services' Settings classes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic_settings import BaseSettings

# uvicorn keeps idle connections longer than nginx's upstream keepalive_timeout (30 s).
UVICORN_KEEPALIVE_S = 65
UVICORN_GRACEFUL_S = 5
# Handlers are configured here, at the process edge; modules only call logging.getLogger(__name__).
LOGGING_CONFIG = Path(__file__).resolve().parent / "logging.json"
APPS = {"inferrer": "inferrer.app:create_app", "modelhost": "modelhost.app:create_app"}
DEFAULT_PORTS = {"inferrer": 8000, "modelhost": 8101}


def env_name(settings: type[BaseSettings], field: str) -> str:
    """The environment variable that sets `field` of a Settings class (its prefix + the name)."""
    if field not in settings.model_fields:
        raise KeyError(f"{settings.__name__} has no setting {field!r}")
    alias = settings.model_fields[field].validation_alias
    if isinstance(alias, str):
        return alias
    return f"{settings.model_config.get('env_prefix', '')}{field}".upper()


def uvicorn_command(
    service: str,
    host: str,
    port: int,
    workers: int = 1,
    python: str = sys.executable,
    tls: tuple[Path, Path] | None = None,
) -> list[str]:
    """The one uvicorn command line of a service, wherever it runs (uvloop and httptools included:
    both come with uvicorn[standard]); `tls`: its (certificate, key), served on the same port."""
    served = ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])] if tls else []
    return [
        python, "-m", "uvicorn", "--factory", APPS[service],
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools",
        "--timeout-keep-alive", str(UVICORN_KEEPALIVE_S),
        "--timeout-graceful-shutdown", str(UVICORN_GRACEFUL_S),
        "--no-access-log", "--log-config", str(LOGGING_CONFIG), *served,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """`python -m deploy.serve_command inferrer|modelhost [--host H] [--port P] [--workers N]`: exec
    uvicorn with the command line above (the images' CMD, and the compose file's commands)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.serve_command")
    parser.add_argument("service", choices=sorted(APPS))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    port = args.port or DEFAULT_PORTS[args.service]
    command = uvicorn_command(args.service, args.host, port, args.workers)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
