"""The database handle: SQLite file by default, PostgreSQL for scale and several daemons."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlmodel import SQLModel

from nurture import models

contact: Table = models.Contact.__table__  # type: ignore[attr-defined]
enrollment: Table = models.Enrollment.__table__  # type: ignore[attr-defined]
message: Table = models.Message.__table__  # type: ignore[attr-defined]
event_t: Table = models.Event.__table__  # type: ignore[attr-defined]
consent_record: Table = models.ConsentRecord.__table__  # type: ignore[attr-defined]
consent_state: Table = models.ConsentState.__table__  # type: ignore[attr-defined]
suppression: Table = models.Suppression.__table__  # type: ignore[attr-defined]
contact_change: Table = models.ContactChange.__table__  # type: ignore[attr-defined]
handoff: Table = models.Handoff.__table__  # type: ignore[attr-defined]
journey_version: Table = models.JourneyVersion.__table__  # type: ignore[attr-defined]


def _normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook issue BEGIN IMMEDIATE (see `_sqlite_begin`).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL is durable across process crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock up front: a CLI command and the daemon never fail half-way on
    # "database is locked" when a read transaction would have to upgrade to a write.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Owns the SQLAlchemy engine; hands out transactions."""

    def __init__(self, url: str) -> None:
        self.url = _normalize_url(url)
        self.engine: Engine = create_engine(self.url, future=True)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)

    def create_all(self) -> None:
        """Create missing tables and indexes (idempotent)."""
        SQLModel.metadata.create_all(self.engine)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: commits on success, rolls back on error."""
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
