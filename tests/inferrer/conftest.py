"""The repository's backends, for the tests that hold for each: the folder (the embedded default),
the shared backend on SQLite with its files in the data directory (one machine), and the shared
backend on a real PostgreSQL with its files in a real S3 bucket (SeaweedFS), as gateways on several
hosts run it. Each call of `open_repository` is another gateway process on the same store."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datafiles.locations import S3Settings, Storage
from inferrer.state.backend import RepositoryBackend
from inferrer.state.folder_backend import FolderBackend
from inferrer.state.repository import ModelRepository
from inferrer.state.shared_backend import SharedBackend
from inferrer.state.shared_schema import metadata, open_index_engine

OpenRepository = Callable[..., ModelRepository]
POLL_S, LEASE_S = 0.05, 2.0


@pytest.fixture(
    params=["folder", "shared-sqlite", pytest.param("shared-postgresql", marks=pytest.mark.fleet)]
)
def open_repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenRepository]:
    opened: list[ModelRepository] = []
    make_backend = _backends(request, tmp_path)

    def open_one(keep_versions: int = 0) -> ModelRepository:
        repository = ModelRepository(make_backend(), keep_versions)
        opened.append(repository)
        return repository

    yield open_one
    for repository in opened:
        repository.close()


def _backends(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], RepositoryBackend]:
    if request.param == "folder":
        return lambda: FolderBackend(tmp_path / "repository")
    if request.param == "shared-sqlite":
        url, artifacts, s3 = f"sqlite:///{tmp_path / 'index.db'}", "models", S3Settings()
    else:
        url = request.getfixturevalue("postgres")
        engine = open_index_engine(url)
        metadata.drop_all(engine)  # each test starts from an empty index
        engine.dispose()
        s3 = request.getfixturevalue("s3")
        bucket = f"models-{uuid.uuid4().hex[:12]}"
        storage = Storage(tmp_path, s3)
        storage.filesystem(storage.location(f"s3://{bucket}/x")).mkdir(bucket)
        artifacts = f"s3://{bucket}/fleet"
    return lambda: SharedBackend(open_index_engine(url), Storage(tmp_path, s3), artifacts, POLL_S, LEASE_S)
