from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from datafiles.locations import S3Settings
from deploy.ephemeral_fleet import RunningFleet, free_ports, start_fleet
from testbed.postgres_server import postgres_server
from testbed.s3_server import s3_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server for the session: the SQLAlchemy URL of its database."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Settings]:
    """SeaweedFS, a real S3-compatible server (a process on loopback), one per module."""
    with s3_server() as settings:
        yield settings


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


CITIES = ["oslo", "bergen", "tromso", "stavanger"]


def _people(rows: int, seed: int) -> pd.DataFrame:
    """Tabular rows: two numeric columns and a text one, as a DataFrame (the fitted order)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows),
            "income": rng.normal(50_000, 15_000, rows).round(2),
            "city": rng.choice(CITIES, rows),
        }
    )


@pytest.fixture(scope="session")
def text_column_pipeline() -> Pipeline:
    """Scaled numbers and a one-hot text column, fitted on a DataFrame (so with feature names)."""
    frame = _people(400, seed=5)
    labels = ((frame["age"] > 45) ^ frame["city"].isin(["oslo", "tromso"])).astype(int) + (
        frame["income"] > 70_000
    ).astype(int)
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    return Pipeline([("columns", columns), ("classify", LogisticRegression(max_iter=500))]).fit(frame, labels)


@pytest.fixture(scope="session")
def text_column_rows() -> pd.DataFrame:
    """Rows to predict on, unlike the training rows; every city appears."""
    frame = _people(12, seed=9)
    frame.loc[: len(CITIES) - 1, "city"] = CITIES
    return frame


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFleet]:
    """A real fleet of 3 nodes, nginx, the inferrer, Prometheus and the stream broker (as the
    example .env has it), started once and shared by the modules that leave it as they found it
    (each deploys models of its own names; a node killed is restarted by the launcher). A module
    that changes the fleet itself starts its own."""
    (broker_port,) = free_ports(1)
    running = start_fleet(
        Path(tmp_path_factory.mktemp("fleet")), nodes=3, env_lines=f"BROKER_PORT={broker_port}\n"
    )
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture
def anyio_backend() -> str:
    """In-process async tests (tests/api/) run on asyncio, as the services do."""
    return "asyncio"
