"""Rows to probe a scikit-learn model with, made from the model itself: where its answer changes.

For trees that split the inputs as sent, one row reaching every split node (within the bounds the
path to it sets) with the split's feature just at or below its threshold, and one just above, as
32-bit floats (the precision scikit-learn's trees compare in). Otherwise draws around the fitted
scale of the model's first step: a StandardScaler's mean and spread, a MinMaxScaler's range, or
standard normal draws.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

RANDOM_PROBES = 1_000
# At most this many values (rows x features) of split probes: ~16 MiB of float64.
MAX_PROBE_VALUES = 2_000_000
MAX_SPLIT_PROBES = 60_000
_SEED = 20260


def parts(model: Any) -> Iterator[Any]:
    """The model and every estimator inside it (pipeline steps, column transformers, ensembles)."""
    yield model
    inner: list[Any] = []
    if hasattr(model, "steps"):
        inner = [step for _, step in model.steps]
    elif hasattr(model, "transformers_"):
        inner = [t for _, t, _ in model.transformers_]
    elif hasattr(model, "transformer_list"):
        inner = [t for _, t in model.transformer_list]
    elif hasattr(model, "estimators_"):
        inner = list(np.ravel(np.asarray(model.estimators_, dtype=object)))
    for part in inner:
        if not isinstance(part, str):  # "passthrough", "drop"
            yield from parts(part)


def raw_input_trees(model: Any) -> list[Any]:
    """The trees of a model that is a tree or an ensemble of trees only, taking the inputs as sent
    (not behind a step, nor on a subset of the features): scikit-learn compares those in 32-bit
    floats. Empty for any other model."""
    if hasattr(model, "steps"):
        if any(not isinstance(step, str) for _, step in model.steps[:-1]):
            return []
        model = model.steps[-1][1]
    if hasattr(model, "estimators_features_"):  # bagging: each tree sees its own feature subset
        return []
    if hasattr(model, "tree_"):
        return [model]
    if not hasattr(model, "estimators_"):
        return []
    members = list(np.ravel(np.asarray(model.estimators_, dtype=object)))
    return members if members and all(hasattr(m, "tree_") for m in members) else []


def probe_rows(model: Any, n_features: int) -> np.ndarray:
    rng = np.random.default_rng(_SEED)
    base = _draws(model, n_features, rng)
    trees = raw_input_trees(model)
    if not trees:
        return base
    budget = min(MAX_SPLIT_PROBES, MAX_PROBE_VALUES // max(n_features, 1))
    per_tree = max(2, budget // len(trees))
    splits = [row for tree in trees for row in _split_probes(tree.tree_, n_features, per_tree)]
    return np.vstack([base, np.array(splits)]) if splits else base


def _draws(model: Any, n_features: int, rng: np.random.Generator) -> np.ndarray:
    first = model.steps[0][1] if hasattr(model, "steps") else model
    shape = (RANDOM_PROBES, n_features)
    mean, scale = getattr(first, "mean_", None), getattr(first, "scale_", None)
    if mean is not None and scale is not None and np.shape(mean) == (n_features,):
        return rng.normal(mean, np.where(scale > 0, scale, 1.0), shape)
    low, high = getattr(first, "data_min_", None), getattr(first, "data_max_", None)
    if low is not None and high is not None and np.shape(low) == (n_features,):
        return rng.uniform(low, high, shape)
    return rng.normal(0.0, 1.0, shape)


def _split_probes(tree: Any, n_features: int, limit: int) -> Iterator[np.ndarray]:
    """Two rows per split node, nearest the root first, each within the bounds of the path to it."""
    queue = deque([(0, np.full(n_features, -np.inf), np.full(n_features, np.inf))])
    made = 0
    while queue and made + 2 <= limit:
        node, low, high = queue.popleft()
        feature = int(tree.feature[node])
        if feature < 0:  # a leaf
            continue
        threshold = float(tree.threshold[node])
        base = _within(low, high)
        for value in _either_side(threshold):
            row = base.copy()
            row[feature] = value
            yield row
        made += 2
        left_high, right_low = high.copy(), low.copy()
        left_high[feature] = min(high[feature], threshold)
        right_low[feature] = max(low[feature], threshold)
        queue.append((int(tree.children_left[node]), low, left_high))
        queue.append((int(tree.children_right[node]), right_low, high))


def _within(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A row inside (low, high] in every feature: the middle, or one past a single bound."""
    row = np.zeros(len(low))
    both = np.isfinite(low) & np.isfinite(high)
    row[both] = (low[both] + high[both]) / 2
    only_low = np.isfinite(low) & ~np.isfinite(high)
    row[only_low] = low[only_low] + 1.0
    only_high = ~np.isfinite(low) & np.isfinite(high)
    row[only_high] = high[only_high] - 1.0
    return row


def _either_side(threshold: float) -> tuple[float, float]:
    """The 32-bit floats just at or below a threshold and just above it (trees compare float32)."""
    near = np.float32(threshold)
    if float(near) > threshold:
        return float(np.nextafter(near, np.float32(-np.inf))), float(near)
    return float(near), float(np.nextafter(near, np.float32(np.inf)))
