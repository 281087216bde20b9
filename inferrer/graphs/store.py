"""Graph versions in the job store's database (SQLite on one machine, PostgreSQL shared by every
gateway): each version's document as deployed and the model versions it pinned, and which version
of each graph is active. A deploy numbers its version and makes it active in one transaction, so
two gateways deploying one graph together make two versions, one after the other."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inferrer.graphs.deployed import GraphRecord
from inferrer.state.sql_engine import WRITE, open_sql_engine

metadata = sa.MetaData()
graph_versions = sa.Table(
    "graph_versions",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("pins", sa.JSON, nullable=False),  # step or member -> model version
    sa.Column("held", sa.JSON, nullable=False),  # [model, version] pairs it keeps from deletion
    sa.Column("holder", sa.String(64), nullable=False),  # of the pins on them
    sa.Column("created", sa.Float, nullable=False),
)
active_graphs = sa.Table(
    "active_graphs",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)
_SCHEMA_LOCK = 0x6D66_6772_6170  # "mfgrap": the advisory lock held while the tables are created
_DEPLOY_LOCK = 0x6D66_6772_6164  # "mfgrad": held while a deploy numbers its version


def open_graph_engine(url: str) -> Engine:
    return open_sql_engine(url, metadata, _SCHEMA_LOCK)


class GraphStore:
    """The store's statements, each run in the calling thread (callers on the event loop run them
    in a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write = engine.execution_options(**{WRITE: True})

    def add(
        self,
        name: str,
        document: dict[str, Any],
        pins: dict[str, str],
        held: Sequence[tuple[str, str]],
        holder: str,
    ) -> GraphRecord:
        """A new version of `name`, active at once; `held`: the model versions `holder` pinned for it."""
        now = time.time()
        with self._write.begin() as db:
            if db.dialect.name == "postgresql":  # deploys of one graph number their versions in turn
                db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DEPLOY_LOCK})
            last = db.execute(
                sa.select(sa.func.max(graph_versions.c.version)).where(graph_versions.c.name == name)
            ).scalar()
            version = (last or 0) + 1
            db.execute(
                graph_versions.insert().values(
                    name=name,
                    version=version,
                    document=document,
                    pins=pins,
                    held=[list(h) for h in held],
                    holder=holder,
                    created=now,
                )
            )
            changed = db.execute(
                active_graphs.update().where(active_graphs.c.name == name).values(version=version)
            ).rowcount
            if not changed:
                db.execute(active_graphs.insert().values(name=name, version=version))
        return GraphRecord(name, str(version), document, pins, now, active=True)

    def activate(self, name: str, version: str) -> bool:
        """Make a stored version the active one (a roll back or forward); False when it is not stored."""
        if not version.isdigit():
            return False
        with self._write.begin() as db:
            found = db.execute(
                sa.select(graph_versions.c.version).where(
                    graph_versions.c.name == name, graph_versions.c.version == int(version)
                )
            ).first()
            if found is None:
                return False
            db.execute(
                active_graphs.update().where(active_graphs.c.name == name).values(version=int(version))
            )
        return True

    def active(self) -> list[GraphRecord]:
        """The active version of every graph."""
        query = sa.select(graph_versions, active_graphs.c.version.label("active")).join(
            active_graphs,
            sa.and_(
                active_graphs.c.name == graph_versions.c.name,
                active_graphs.c.version == graph_versions.c.version,
            ),
        )
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(graph_versions.c.name)).mappings().all()
        return [_record(row, True) for row in rows]

    def versions(self, name: str) -> list[GraphRecord]:
        """Every version of `name`, oldest first ([] when there is no such graph)."""
        with self.engine.connect() as db:
            active = db.execute(
                sa.select(active_graphs.c.version).where(active_graphs.c.name == name)
            ).scalar()
            rows = (
                db.execute(
                    sa.select(graph_versions)
                    .where(graph_versions.c.name == name)
                    .order_by(graph_versions.c.version)
                )
                .mappings()
                .all()
            )
        return [_record(row, row["version"] == active) for row in rows]

    def delete(self, name: str) -> list[DeletedVersion]:
        """Every version of `name`, each with the pins it held (to release)."""
        columns = (graph_versions.c.version, graph_versions.c.holder, graph_versions.c.held)
        with self._write.begin() as db:
            rows = db.execute(
                sa.delete(graph_versions).where(graph_versions.c.name == name).returning(*columns)
            )
            deleted = [
                DeletedVersion(str(v), holder, [(m, mv) for m, mv in held]) for v, holder, held in rows
            ]
            db.execute(sa.delete(active_graphs).where(active_graphs.c.name == name))
        return sorted(deleted, key=lambda d: int(d.version))


@dataclass(frozen=True)
class DeletedVersion:
    version: str
    holder: str  # of its pins on model versions
    held: list[tuple[str, str]]


def _record(row: Any, active: bool) -> GraphRecord:
    return GraphRecord(row["name"], str(row["version"]), row["document"], row["pins"], row["created"], active)
