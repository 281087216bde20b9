"""The job store's URL for a test: SQLite in its temporary folder, or a real PostgreSQL server (one
for the session, emptied for each test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferrer.jobs.schema import metadata, open_engine
from testbed.postgres_server import postgres_bin


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.fleet)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    assert postgres_bin() is not None, "PostgreSQL is not installed (deploy/test.sh installs it)"
    database: str = request.getfixturevalue("postgres")
    engine = open_engine(database)
    metadata.drop_all(engine)  # each test starts from an empty store
    engine.dispose()
    return database
