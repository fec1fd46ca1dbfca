"""The one codec: how timestamps and JSON documents are written to and read from the
database, for SQLAlchemy columns (`UTCDateTime`) and for the driver-level batch
statements alike.

Timestamps are aware UTC in Python. SQLite's DATETIME is text: naive UTC with
microseconds, the exact text SQLAlchemy writes; PostgreSQL stores `timestamptz`.
Batches' hot statements skip SQLAlchemy's per-value processing, which costs more than
the database work itself (benchmarks/events.py, benchmarks/tick.py): they bind through
`driver_rows` and read through `read_time` / `read_document`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.types import DateTime, TypeDecorator


def to_utc(value: datetime) -> datetime:
    """Aware UTC; a naive datetime is a bug (nurture stores aware UTC datetimes)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: nurture stores aware UTC datetimes")
    return value.astimezone(UTC)


def write_time(value: datetime | None, sqlite: bool) -> Any:
    """A timestamp as the driver takes it."""
    if value is None:
        return None
    utc = to_utc(value)
    return utc.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else utc


def read_time(value: Any) -> datetime | None:
    """A timestamp as the driver gives it back: aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    stamp: datetime = value
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def write_document(value: Any) -> Any:
    if value is None:
        return None
    return json.dumps(value) if value or type(value) is not dict else "{}"


_decode = json.JSONDecoder().raw_decode


def read_document(value: Any) -> Any:
    """A JSON column read by the driver (text on SQLite, which we wrote ourselves)."""
    return _decode(value)[0] if isinstance(value, str) else value


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        utc = to_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return read_time(value)


def driver_sql(conn: Connection, sql: str) -> str:
    """`?` placeholders as the driver wants them (`%s` for psycopg)."""
    return sql if conn.dialect.name == "sqlite" else sql.replace("?", "%s")


def driver_read(conn: Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of `sql` (`?` placeholders) read at the driver, in the connection's
    transaction: no statement compiled, no value processed (the hot reads of each batch;
    the caller reads times and documents with `read_time` / `read_document`)."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(driver_sql(conn, sql), tuple(params))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def driver_rows(conn: Connection, table: Table, columns: Sequence[str],
                rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows whose first values are `columns` of `table`, bound as SQLAlchemy binds them.
    Converted column by column: a batch's rows share a few timestamps, each converted
    once."""
    rows = list(rows)
    timestamps = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
    documents = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    if not rows or not (timestamps or documents):
        return [tuple(row) for row in rows]
    sqlite = conn.dialect.name == "sqlite"
    values = list(zip(*rows, strict=True))
    for i in timestamps:
        stamps = {value: write_time(value, sqlite) for value in set(values[i])}
        values[i] = tuple(map(stamps.__getitem__, values[i]))
    for i in documents:
        values[i] = tuple(map(write_document, values[i]))
    return list(zip(*values, strict=True))


def execute_many(conn: Connection, sql: str, table: Table, columns: Sequence[str],
                 rows: Iterable[Sequence[Any]]) -> int:
    """One statement (`?` placeholders) for every row; how many rows it changed."""
    bound = driver_rows(conn, table, columns, rows)
    if not bound:
        return 0
    return conn.exec_driver_sql(driver_sql(conn, sql), bound).rowcount
