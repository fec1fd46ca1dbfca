"""The store owns its schema through Alembic revisions (`nurture/store/migrations`).

`upgrade` brings any database to the newest revision with its data: an empty one is
created, one made before migrations existed (tables but no `alembic_version`) is
recognised as the first revision and upgraded from there. `require_current` is what
every command runs first: an out-of-date schema is refused with one line naming the
command that fixes it, never discovered later as a missing column.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlmodel import SQLModel

from nurture.errors import SchemaOutdated
from nurture.store import tables  # noqa: F401  (registers the tables on the metadata)
from nurture.store.database import Database

# Alembic narrates every step at INFO; our commands say what happened in one line
logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: the schema of databases created before migrations existed
BASELINE = "0001"


def _config(conn: Connection) -> Config:
    config = _script_config()
    config.attributes["connection"] = conn
    return config


def head() -> str:
    return str(ScriptDirectory.from_config(_script_config()).get_current_head())


def _script_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def current(conn: Connection) -> str | None:
    """The database's revision; BASELINE for a pre-migration database, None when empty."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None and inspect(conn).has_table("contact"):
        return BASELINE
    return revision


def upgrade(db: Database) -> tuple[str | None, str]:
    """Run every pending revision. Returns (revision before, revision after)."""
    with db.engine.begin() as conn:
        before = current(conn)
        config = _config(conn)
        if before == BASELINE and MigrationContext.configure(conn).get_current_revision() is None:
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
        return before, head()


def require_current(db: Database) -> None:
    """Create an empty database; refuse one whose schema is behind (SchemaOutdated)."""
    with db.engine.connect() as conn:
        revision = current(conn)
    if revision is None:
        upgrade(db)
        return
    if revision != head():
        raise SchemaOutdated(f"the database schema is at revision {revision}, this version "
                             f"needs {head()}: run `nurture db upgrade`")


def differences(db: Database) -> list[object]:
    """What the tables declare that the migrations do not make (empty when in step)."""
    with db.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))
