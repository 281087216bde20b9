"""`modelfleet migrate`: a one-machine fleet's state into the shared stores that the .env names.

Run it once, with the fleet stopped, after adding `INFERRER_REPOSITORY_DB_URL`,
`INFERRER_REPOSITORY_ARTIFACTS_URL` and `INFERRER_JOBS_DB_URL` to the .env and before starting any
gateway with them. It copies every stored version (its manifest as it is: version, creation time,
sha256, runtime), the active pointers, and every job and watch with its partitions and files. What the
stores hold already is left as it is, so a second run after an interrupted one completes the copy; a
version stored in both with other bytes is refused. Job files stay at their locations.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from dotenv import dotenv_values

from artifacts.manifest import Manifest
from datafiles.locations import S3Settings, Storage
from deploy.local_specs import DataDirs, LaunchError
from deploy.serve_command import env_name
from inferrer.jobs.schema import metadata as job_tables
from inferrer.jobs.schema import open_engine as open_job_engine
from inferrer.settings import InferrerSettings
from inferrer.state.backend import Index, Staged
from inferrer.state.folder_backend import FolderBackend
from inferrer.state.shared_backend import SharedBackend
from inferrer.state.shared_schema import open_index_engine
from inferrer.state.sql_engine import WRITE


def run(env_file: Path, data_dir: Path) -> int:
    values = {name: value for name, value in dotenv_values(env_file).items() if value}
    targets = [env_name(InferrerSettings, f) for f in ("repository_db_url", "repository_artifacts_url")]
    jobs_var = env_name(InferrerSettings, "jobs_db_url")
    if any(var not in values for var in [*targets, jobs_var]):
        raise LaunchError(f"{env_file} must name the shared stores first: {', '.join([*targets, jobs_var])}")
    dirs = DataDirs(data_dir.resolve())
    if not (dirs.repository / "models").is_dir():
        raise LaunchError(f"no repository in {dirs.repository}: pass the fleet's --data-dir")
    s3 = S3Settings.model_validate({k: v for k, v in values.items() if k.startswith("AWS_")})
    source = FolderBackend(dirs.repository)
    target = SharedBackend(
        open_index_engine(values[targets[0]]), Storage(dirs.data, s3), values[targets[1]], 1.0, 60.0
    )
    try:
        copied = copy_repository(source, target)
    finally:
        target.close()
    print(f"repository: {copied} versions copied ({_count(source.current())} stored here)")
    local_jobs = dirs.data / ".modelfleet" / "jobs.db"
    if local_jobs.exists():
        print(f"jobs and watches: {copy_job_store(f'sqlite:///{local_jobs}', values[jobs_var])} rows copied")
    return 0


def copy_repository(source: FolderBackend, target: SharedBackend) -> int:
    """Every version the target lacks, uploaded first (outside the database's lock), then published
    with the active pointers in one write; returns how many. Uploads that end up in no published
    version are removed, whatever failed."""
    index = source.current()
    missing = [m for m in index.manifests() if _lacks(target.current(), m)]
    staged: dict[tuple[str, str], Staged] = {}
    published: set[tuple[str, str]] = set()
    try:
        for manifest in missing:
            staged[manifest.key] = target.stage(manifest.format, *_files(source, index, manifest))
        with target.locked() as present:
            versions = {name: dict(stored) for name, stored in present.versions.items()}
            for manifest in missing:
                if _lacks(present, manifest):  # not copied meanwhile by another run
                    target.publish(staged[manifest.key], manifest)
                    versions.setdefault(manifest.name, {})[manifest.version] = manifest
                    published.add(manifest.key)
            active = dict(present.active)
            for name, version in index.active.items():
                if name not in active:
                    target.write_active(name, version)
                    active[name] = version
            target.commit(versions, active)
    except BaseException:
        published.clear()  # the transaction rolled back: none of them is in the index
        raise
    finally:
        for key, files in staged.items():
            if key not in published:
                target.discard(files)
    return len(published)


def _lacks(present: Index, manifest: Manifest) -> bool:
    there = present.versions.get(manifest.name, {}).get(manifest.version)
    if there is not None and there.sha256 != manifest.sha256:
        raise LaunchError(
            f"{manifest.name} version {manifest.version} is in the shared repository already, with other "
            "bytes: remove one of them first"
        )
    return there is None


def _files(source: FolderBackend, index: Index, manifest: Manifest) -> tuple[bytes, bytes | None]:
    """A version's artifact and, when it has one, its verified ONNX graph."""
    artifact = source.open_artifact(index, manifest, graph=False)
    with artifact.handle:
        data = artifact.handle.read()
    if not manifest.compiled:
        return data, None
    graph = source.open_artifact(index, manifest, graph=True)
    with graph.handle:
        return data, graph.handle.read()


def copy_job_store(source_url: str, target_url: str) -> int:
    """Every row the target lacks, table by table (parents first), in one transaction."""
    source, target = open_job_engine(source_url), open_job_engine(target_url)
    copied = 0
    try:
        with source.connect() as reading, target.execution_options(**{WRITE: True}).begin() as writing:
            for table in job_tables.sorted_tables:
                keys = [column.name for column in table.primary_key.columns] or [
                    c.name for c in table.columns
                ]
                present = {tuple(row) for row in writing.execute(sa.select(*[table.c[k] for k in keys]))}
                rows = [
                    dict(row._mapping)
                    for row in reading.execute(sa.select(table))
                    if tuple(row._mapping[k] for k in keys) not in present
                ]
                if rows:
                    writing.execute(table.insert(), rows)
                    copied += len(rows)
                    _advance_counter(writing, table)
    finally:
        source.dispose()
        target.dispose()
    return copied


def _advance_counter(connection: sa.Connection, table: sa.Table) -> None:
    """Rows copied with their own ids leave PostgreSQL's id sequence behind: move it past them."""
    ids = [c for c in table.primary_key.columns if c.autoincrement is True]
    if connection.dialect.name == "postgresql" and ids:
        sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
        connection.execute(sa.text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table.name}))"))


def _count(index: Index) -> int:
    return sum(1 for _ in index.manifests())
