"""Send pace per sender (fleet pacing), daemon beats (status, health), indexes on the
ledger's address (a STOP speaks for a number) and on event.message_id (reports).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import nurture.store.codec

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('daemonbeat',
    sa.Column('worker', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('started_at', nurture.store.codec.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_tick_at', nurture.store.codec.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_report', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('worker')
    )
    op.create_table('sendpace',
    sa.Column('sender', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('free_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('sender')
    )
    with op.batch_alter_table('consentrecord', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consentrecord_address'), ['address'], unique=False)

    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_message_id'), ['message_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_message_id'))

    with op.batch_alter_table('consentrecord', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consentrecord_address'))

    op.drop_table('sendpace')
    op.drop_table('daemonbeat')
