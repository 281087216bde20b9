from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tests.harness import RunningFleet, start_fleet


@pytest.fixture(scope="session")
def training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(400, 6))
    labels = (features[:, 0] + 0.5 * features[:, 3] - features[:, 5] > 0).astype(int)
    return features, labels


@pytest.fixture(scope="session")
def pipeline(training_data: tuple[np.ndarray, np.ndarray]) -> Pipeline:
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression())])
    return model.fit(*training_data)


@pytest.fixture(scope="session")
def pipeline_skops(pipeline: Pipeline) -> bytes:
    return sio.dumps(pipeline)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    """A real fleet of 3 nodes, nginx, the inferrer and Prometheus, for one test module."""
    running = start_fleet(Path(tmp_path_factory.mktemp("fleet")), nodes=3)
    yield running
    assert running.stop() == 0, running.log()
