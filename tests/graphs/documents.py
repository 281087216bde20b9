"""What the in-process graph tests share: the data, the models fitted on it, and graph documents."""

from __future__ import annotations

from typing import Any

import numpy as np
import skops.io as sio
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from tests.in_process import AUTH, InProcessFleet

X, Y = make_classification(
    n_samples=1000, n_features=4, n_informative=3, n_redundant=0, n_classes=3, random_state=0
)
ROWS = np.random.default_rng(7).normal(size=(1000, 4)) * 2


def graph_document(name: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "modelfleet/v1", "kind": "InferenceGraph", "name": name, "steps": steps, **extra}


async def predict_graph(fleet: InProcessFleet, graph: str, rows: np.ndarray, **extra: Any) -> dict[str, Any]:
    answer = await fleet.gateway.post(
        f"/api/v1/graphs/{graph}/predict", headers=AUTH, json={"instances": rows.tolist(), **extra}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def fit_models() -> dict[str, Any]:
    """By name: a scaler, a logistic regression on its output, a forest, a tree, a gate (x0 > 0)
    and a logistic regression on the raw rows."""
    scaler = StandardScaler().fit(X)
    return {
        "scaler": scaler,
        "logistic": LogisticRegression(max_iter=500).fit(scaler.transform(X), Y),
        "forest": RandomForestClassifier(n_estimators=10, random_state=0).fit(X, Y),
        "tree": DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, Y),
        "gate": DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int)),
        "raw": LogisticRegression(max_iter=500).fit(X, Y),
    }


async def deploy_all(fleet: InProcessFleet, fitted: dict[str, Any]) -> None:
    for name, model in fitted.items():
        await fleet.deploy(name, sio.dumps(model), runtime="sklearn")
