"""The database handle: SQLite file by default, PostgreSQL for scale and several daemons."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlmodel import SQLModel

from nurture.store import tables  # noqa: F401  (declares the tables on the metadata)

_tables = SQLModel.metadata.tables
contact: Table = _tables["contact"]
enrollment: Table = _tables["enrollment"]
message: Table = _tables["message"]
event_t: Table = _tables["event"]
consent_record: Table = _tables["consentrecord"]
consent_state: Table = _tables["consentstate"]
suppression: Table = _tables["suppression"]
contact_change: Table = _tables["contactchange"]
handoff: Table = _tables["handoff"]
journey_version: Table = _tables["journeyversion"]
journey_state: Table = _tables["journeystate"]
step_run: Table = _tables["steprun"]
ledger_version: Table = _tables["ledgerversion"]
send_pace: Table = _tables["sendpace"]
daemon_beat: Table = _tables["daemonbeat"]


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
    # 8 MiB of page cache a connection (SQLite's default is 2): the indexes a batch of
    # events or a tick's batch touch stay in memory (ingest +25%, the tick's RSS 114 MB)
    cursor.execute("PRAGMA cache_size=-8192")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # Take the write lock up front: a CLI command and the daemon never fail half-way on
    # "database is locked" when a read transaction would have to upgrade to a write.
    # Readers (`Database.reader`) run in autocommit and take no lock.
    if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
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

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: commits on success, rolls back on error."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A connection in autocommit for short reads that must see the latest committed
        state and lock nothing (the send path's last look at consent)."""
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def dispose(self) -> None:
        self.engine.dispose()
