"""What a graph computes itself, on the answers of its model calls: an ensemble's combination (as
scikit-learn's VotingClassifier and VotingRegressor combine), and a split's choice of branch
(a switch's conditions: conditions.py). Plain array arithmetic: nothing a document can make run."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np


def as_columns(answer: list[Any]) -> np.ndarray:
    """A model's answer (one value or one list per row) as a [rows, columns] array."""
    values = np.asarray(answer)
    if values.dtype.kind not in "biuf":
        values = np.asarray(answer, dtype=object)
    return values.reshape(len(answer), -1) if values.ndim == 1 else values


def soft_vote(probabilities: Sequence[np.ndarray], weights: Sequence[float] | None) -> np.ndarray:
    """The members' probabilities averaged (weighted): VotingClassifier(voting="soft")."""
    return np.average(np.stack([p.astype(np.float64) for p in probabilities]), axis=0, weights=weights)


def labels_of(probabilities: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """Each row's class of highest probability (the first of equals, as numpy's argmax)."""
    return np.asarray(classes, dtype=object)[np.argmax(probabilities, axis=1)].reshape(-1, 1)


def hard_vote(
    labels: Sequence[np.ndarray], classes: Sequence[Any], weights: Sequence[float] | None
) -> np.ndarray:
    """Each row's most voted class (weighted); a tie goes to the class listed first, as in
    VotingClassifier(voting="hard")."""
    index = {label: i for i, label in enumerate(classes)}
    votes = np.zeros((len(labels[0]), len(classes)))
    for member, column in enumerate(labels):
        weight = 1.0 if weights is None else weights[member]
        for row, label in enumerate(column[:, 0].tolist()):
            votes[row, index[label]] += weight
    return np.asarray(classes, dtype=object)[np.argmax(votes, axis=1)].reshape(-1, 1)


def average(values: Sequence[np.ndarray], weights: Sequence[float] | None) -> np.ndarray:
    """Regressors' predictions averaged (weighted): VotingRegressor."""
    return np.average(np.stack([v.astype(np.float64) for v in values]), axis=0, weights=weights)


def choose_branch(weights: Sequence[float], draw: float | None = None) -> int:
    """A split's branch for one request, each taken in proportion to its weight."""
    point = (random.random() if draw is None else draw) * sum(weights)
    for i, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return i
    return len(weights) - 1
