"""The autoscaler's shared state, in the job store's database (SQLite on one machine, PostgreSQL
shared by every gateway): each gateway process's latest signals, the lease of the one process that
decides, the decided state, and the log of decisions and node starts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from inferrer.scaling.policy import Signals
from inferrer.state.sql_engine import WRITE, open_sql_engine
from wire.autoscaler_answers import EventKind

metadata = sa.MetaData()
published = sa.Table(
    "autoscaler_signals",
    metadata,
    sa.Column("process", sa.String(80), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("in_flight", sa.Integer, nullable=False),
    sa.Column("held", sa.Integer, nullable=False),
    sa.Column("batch_queued", sa.Integer, nullable=False),
    sa.Column("predict_s", sa.Float),
)
lease = sa.Table(
    "autoscaler_lease",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # one row
    sa.Column("holder", sa.String(80), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
)
state = sa.Table(
    "autoscaler_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # one row
    sa.Column("desired", sa.Integer, nullable=False),
    sa.Column("nodes", sa.Integer, nullable=False),
    sa.Column("ready_nodes", sa.Integer, nullable=False),
    sa.Column("cold_start_s", sa.Float),
    sa.Column("decider", sa.String(80), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)
events = sa.Table(
    "autoscaler_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # up, down, started, start_failed, stopped
    sa.Column("nodes_from", sa.Integer),
    sa.Column("nodes_to", sa.Integer),
    sa.Column("node", sa.String(80)),
    sa.Column("seconds", sa.Float),
    sa.Column("reason", sa.Text, nullable=False),
)
_SCHEMA_LOCK = 0x6D66_6175_746F  # "mfauto": the advisory lock held while the tables are created
KEEP_EVENTS = 200


@dataclass(frozen=True)
class ScaleState:
    desired: int
    nodes: int
    ready_nodes: int
    cold_start_s: float | None
    decider: str
    at: float


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    kind: EventKind
    reason: str
    nodes_from: int | None = None
    nodes_to: int | None = None
    node: str | None = None
    seconds: float | None = None


def open_scaling_engine(url: str) -> Engine:
    return open_sql_engine(url, metadata, _SCHEMA_LOCK)


class ScalingStore:
    """The store's statements, each run in the calling thread (callers on the event loop run them
    in a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write = engine.execution_options(**{WRITE: True})

    def publish(self, process: str, signals: Signals) -> None:
        """This process's signals now (one row per process, replaced)."""
        row = {
            "at": time.time(),
            "in_flight": signals.in_flight,
            "held": signals.held,
            "batch_queued": signals.batch_queued,
            "predict_s": signals.predict_s,
        }
        with self._write.begin() as db:
            if not db.execute(
                published.update().where(published.c.process == process).values(**row)
            ).rowcount:
                db.execute(published.insert().values(process=process, **row))

    def summed(self, fresh_s: float) -> Signals:
        """Every process's signals published within `fresh_s`, summed (the predict time: their mean)."""
        with self.engine.connect() as db:
            rows = db.execute(published.select().where(published.c.at >= time.time() - fresh_s)).all()
        times = [r.predict_s for r in rows if r.predict_s is not None]
        return Signals(
            in_flight=sum(r.in_flight for r in rows),
            held=sum(r.held for r in rows),
            batch_queued=sum(r.batch_queued for r in rows),
            predict_s=sum(times) / len(times) if times else None,
        )

    def forget(self, process: str) -> None:
        with self._write.begin() as db:
            db.execute(published.delete().where(published.c.process == process))

    def take_lease(self, holder: str, lease_s: float) -> bool:
        """Renew the lease when `holder` has it, take it when it expired; whether `holder` has it now."""
        now = time.time()
        with self._write.begin() as db:
            row = db.execute(lease.select().where(lease.c.id == 1).with_for_update()).first()
            if row is None:
                db.execute(lease.insert().values(id=1, holder=holder, expires=now + lease_s))
                return True
            if row.holder != holder and row.expires > now:
                return False
            db.execute(lease.update().where(lease.c.id == 1).values(holder=holder, expires=now + lease_s))
            return True

    def release_lease(self, holder: str) -> None:
        with self._write.begin() as db:
            db.execute(lease.delete().where(lease.c.id == 1, lease.c.holder == holder))

    def lease_holder(self) -> str | None:
        with self.engine.connect() as db:
            row = db.execute(lease.select().where(lease.c.id == 1)).first()
        return row.holder if row is not None and row.expires > time.time() else None

    def save_state(self, desired: int, nodes: int, ready_nodes: int, decider: str, lease_s: float) -> bool:
        """The decision, written only while `decider` holds the lease (renewed in the same
        transaction); False when it no longer does (another process decides now)."""
        now = time.time()
        values = {
            "desired": desired,
            "nodes": nodes,
            "ready_nodes": ready_nodes,
            "decider": decider,
            "at": now,
        }
        with self._write.begin() as db:
            held = db.execute(
                lease.update()
                .where(lease.c.id == 1, lease.c.holder == decider, lease.c.expires > now)
                .values(expires=now + lease_s)
            ).rowcount
            if not held:
                return False
            if not db.execute(state.update().where(state.c.id == 1).values(**values)).rowcount:
                db.execute(state.insert().values(id=1, cold_start_s=None, **values))
        return True

    def load_state(self) -> ScaleState | None:
        with self.engine.connect() as db:
            row = db.execute(state.select().where(state.c.id == 1)).first()
        if row is None:
            return None
        return ScaleState(row.desired, row.nodes, row.ready_nodes, row.cold_start_s, row.decider, row.at)

    def add_cold_start(self, seconds: float, alpha: float) -> None:
        """One measured cold start, moved into the moving average in one statement."""
        blended = sa.case(
            (state.c.cold_start_s.is_(None), seconds),
            else_=alpha * seconds + (1 - alpha) * state.c.cold_start_s,
        )
        with self._write.begin() as db:
            if not db.execute(state.update().where(state.c.id == 1).values(cold_start_s=blended)).rowcount:
                first = {"desired": 0, "nodes": 0, "ready_nodes": 0, "decider": "", "at": time.time()}
                db.execute(state.insert().values(id=1, cold_start_s=seconds, **first))

    def log(self, event: ScaleEvent) -> None:
        """One event, keeping the newest KEEP_EVENTS."""
        with self._write.begin() as db:
            db.execute(
                events.insert().values(
                    at=event.at, kind=event.kind, reason=event.reason, nodes_from=event.nodes_from,
                    nodes_to=event.nodes_to, node=event.node, seconds=event.seconds,
                )
            )  # fmt: skip
            newest = sa.select(events.c.id).order_by(events.c.id.desc()).limit(KEEP_EVENTS).subquery()
            db.execute(events.delete().where(events.c.id.not_in(sa.select(newest.c.id))))

    def recent(self, count: int) -> list[ScaleEvent]:
        """The newest `count` events, newest first."""
        with self.engine.connect() as db:
            rows = db.execute(events.select().order_by(events.c.id.desc()).limit(count)).all()
        return [
            ScaleEvent(r.at, cast(EventKind, r.kind), r.reason, r.nodes_from, r.nodes_to, r.node, r.seconds)
            for r in rows
        ]
