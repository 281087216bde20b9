"""The shared repository's index in SQL (PostgreSQL when gateways on several hosts share it; SQLite
works on one machine): versions with their manifests and where their files are, active pointers,
pins, one generation row that every write locks and bumps, and the gateway processes reading it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from artifacts.manifest import Manifest
from inferrer.state.backend import Index, Staged
from inferrer.state.sql_engine import open_sql_engine

metadata = sa.MetaData()

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("manifest", sa.Text, nullable=False),  # artifacts.manifest.Manifest as JSON
    sa.Column("artifact", sa.String(1100), nullable=False),  # its location (s3:// or in the data dir)
    sa.Column("graph", sa.String(1100)),  # the verified ONNX graph's, where there is one
)

active_versions = sa.Table(
    "active_versions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), nullable=False),
)

version_pins = sa.Table(
    "version_pins",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), primary_key=True),
    sa.Column("lapses_at", sa.Float),  # epoch seconds; None: until unpinned
)

# One row. A write's transaction first updates it, which holds the row's lock until the commit:
# the lock every management write takes, across every gateway (the database's, not a file's).
repository_generation = sa.Table(
    "repository_generation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# Every gateway process reading the index: the generation it has in memory, and when it last read
# (epoch seconds). A writer waits for the live ones to catch up before it answers.
repository_readers = sa.Table(
    "repository_readers",
    metadata,
    sa.Column("reader", sa.String(64), primary_key=True),
    sa.Column("seen", sa.BigInteger, nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),
)

_SCHEMA_LOCK = 0x6D66_7265_706F  # "mfrepo": the advisory lock held while the tables are created
GENERATION_ROW = 1


def open_index_engine(url: str) -> Engine:
    """The shared index's engine: its tables in place, and its generation row."""
    engine = open_sql_engine(url, metadata, _SCHEMA_LOCK)
    with engine.begin() as connection:
        exists = connection.execute(sa.select(repository_generation.c.value)).first()
    if exists is None:
        try:
            with engine.begin() as connection:
                connection.execute(repository_generation.insert().values(id=GENERATION_ROW, value=1))
        except sa.exc.IntegrityError:
            pass  # another gateway process inserted it first
    return engine


def read_index(connection: Connection, value: int) -> Index:
    """The whole index as stored now, with the generation it was read at."""
    versions: dict[str, dict[str, Manifest]] = {}
    places: dict[tuple[str, str], Staged] = {}
    for row in connection.execute(sa.select(model_versions)):
        manifest = Manifest.model_validate_json(row.manifest)
        versions.setdefault(manifest.name, {})[manifest.version] = manifest
        places[manifest.key] = Staged(row.artifact, row.graph)
    active = {
        name: version
        for name, version in connection.execute(sa.select(active_versions.c.name, active_versions.c.version))
        if version in versions.get(name, {})
    }
    return Index(versions, active, value, places)
