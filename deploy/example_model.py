"""The example model `modelfleet up` deploys: trained at start from scikit-learn's bundled iris data."""

from __future__ import annotations

import httpx
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

EXAMPLE_NAME = "iris"
EXAMPLE_ROW = [5.1, 3.5, 1.4, 0.2]


def train_example() -> bytes:
    """A scaler + classifier Pipeline on the iris flowers, as skops bytes."""
    features, labels = load_iris(return_X_y=True)
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=500))])
    model.fit(features, labels)
    return sio.dumps(model)


def deploy_example(inferrer: httpx.Client) -> str:
    """Deploy the example unless the repository already has it; returns what happened.

    `inferrer`: a client on the inferrer's URL that carries the management token."""
    existing = inferrer.get(f"/api/v1/models/{EXAMPLE_NAME}", timeout=10)
    if existing.status_code == 200:
        return f"example model {EXAMPLE_NAME!r} already deployed"
    response = inferrer.post(
        "/api/v1/models",
        data={"name": EXAMPLE_NAME},
        files={"file": (f"{EXAMPLE_NAME}.skops", train_example())},
        timeout=60,
    )
    response.raise_for_status()
    body = response.json()
    return f"deployed example model {EXAMPLE_NAME!r} v{body['version']} on {body['nodes_loaded']}"


if __name__ == "__main__":
    # `python -m deploy.example_model iris.skops` writes the example model to a file.
    import sys
    from pathlib import Path

    Path(sys.argv[1] if len(sys.argv) > 1 else "iris.skops").write_bytes(train_example())
