"""Message kind (journey, confirmation, notification); the ledger version counter.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledgerversion",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("message", schema=None) as batch_op:
        # rows already there: journey steps, except the double opt-in confirmations
        batch_op.add_column(sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default="journey"))
    op.execute("UPDATE message SET kind = 'confirmation' WHERE enrollment_id IS NULL "
               "AND template = 'consent/confirm'")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.alter_column("kind", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("kind")
    op.drop_table("ledgerversion")
