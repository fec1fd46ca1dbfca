"""Alembic environment: the store's own schema history, run from code (`store.schema`).

`render_as_batch` makes autogenerate emit `batch_alter_table` blocks, which SQLite needs
for column changes; the same revisions run on PostgreSQL.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from nurture.store import tables  # noqa: F401  (registers the tables on the metadata)

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
