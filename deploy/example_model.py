"""The example model `modelfleet up` deploys: trained at start from scikit-learn's bundled iris data
(run as a process of its own: deploy/example.py)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from deploy.example import EXAMPLE_NAME, EXAMPLE_ROW
from wire.bearer import MANAGEMENT_TOKEN_VAR, bearer_headers, token_file_var, token_from_file
from wire.tls import TLS_CA_VAR, client_context

__all__ = ["EXAMPLE_NAME", "EXAMPLE_ROW", "deploy_example", "main", "train_example"]

# How long `--deploy` keeps trying while the gateway does not answer (a restart takes seconds).
_RETRY_FOR_S = 120.0


def train_example() -> bytes:
    """A scaler + classifier Pipeline on the iris flowers, as skops bytes."""
    features, labels = load_iris(return_X_y=True)
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=500))])
    model.fit(features, labels)
    return sio.dumps(model)


def deploy_example(inferrer: httpx.Client) -> str:
    """Deploy the example unless the repository already has it; returns what happened, and raises
    RuntimeError when no node could load it (so it did not become active).

    `inferrer`: a client on the inferrer's URL that carries the management token."""
    # A node must be up to load it (an orchestrator starts the services in no order): until the
    # gateway is ready, a 503 that --deploy retries.
    inferrer.get("/health/ready", timeout=10).raise_for_status()
    existing = inferrer.get(f"/api/v1/models/{EXAMPLE_NAME}", timeout=10)
    if existing.status_code == 200 and existing.json()["active_version"] is not None:
        return f"example model {EXAMPLE_NAME!r} already deployed"
    response = inferrer.post(
        "/api/v1/models",
        data={"name": EXAMPLE_NAME},
        files={"file": (f"{EXAMPLE_NAME}.skops", train_example())},
        timeout=60,
    )
    response.raise_for_status()
    body = response.json()
    if not body["activated"]:
        raise RuntimeError(f"example model {EXAMPLE_NAME!r} v{body['version']}: {body['activation']}")
    return f"deployed example model {EXAMPLE_NAME!r} v{body['version']} on {body['nodes_loaded']}"


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.example_model iris.skops` writes the example model to a file;
    `--deploy URL` deploys it to the inferrer at URL unless it is there (the compose stack's
    one-shot `example-model` service), with the management token from the environment (or from the
    file that `MODELFLEET_MANAGEMENT_TOKEN_FILE` names)."""
    parser = argparse.ArgumentParser(prog="python -m deploy.example_model", description=__doc__)
    parser.add_argument("file", nargs="?", default="iris.skops", help="where to write it (%(default)s)")
    parser.add_argument("--deploy", metavar="URL", help="deploy it to the inferrer at URL instead")
    args = parser.parse_args(argv)
    if not args.deploy:
        Path(args.file).write_bytes(train_example())
        return 0
    token_file = os.environ.get(token_file_var(MANAGEMENT_TOKEN_VAR))  # a Swarm or Kubernetes secret
    token = token_from_file(os.environ.get(MANAGEMENT_TOKEN_VAR), Path(token_file) if token_file else None)
    headers = bearer_headers(token)
    deadline = time.monotonic() + _RETRY_FOR_S
    verify = client_context(os.environ.get(TLS_CA_VAR)) or True
    with httpx.Client(base_url=args.deploy, headers=headers, verify=verify) as inferrer:
        while True:
            try:
                print(deploy_example(inferrer), flush=True)
                return 0
            except (httpx.HTTPError, RuntimeError) as exc:
                answer = exc.response.text if isinstance(exc, httpx.HTTPStatusError) else ""
                # The gateway restarting (unreachable, or 5xx while its nodes reconnect): again.
                again = isinstance(exc, httpx.TransportError) or (
                    isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500
                )
                if not again or time.monotonic() > deadline:
                    print(f"could not deploy the example model: {exc} {answer}", file=sys.stderr)
                    return 1
                print(f"the gateway did not answer ({exc!r}); trying again", file=sys.stderr, flush=True)
                time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
