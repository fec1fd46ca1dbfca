"""Journey state (current applied version, paused, entry sweep), step runs (the path
trace), blocked enrollments (live: they hold their place) and the wait an enrollment is in.

Existing rows are kept as they are: the latest applied version of each journey becomes
its current one; enrollments waiting on a wait_for record that step as the one they wait
in. Enrollments that failed before this revision stay `failed` (their history).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 15:59:14.084403
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import nurture.store.codec

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

LIVE_BEFORE = "state IN ('active', 'waiting', 'paused')"
LIVE_AFTER = "state IN ('active', 'waiting', 'paused', 'blocked')"


def _live_index(where: str) -> None:
    op.create_index('uq_enrollment_live', 'enrollment', ['contact_id', 'journey_id'], unique=True,
                    sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    op.create_table('journeystate',
    sa.Column('journey_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('sweep_after', sa.Integer(), nullable=True),
    sa.Column('applied_at', nurture.store.codec.UTCDateTime(timezone=True), nullable=False),
    sa.Column('removed_at', nurture.store.codec.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', nurture.store.codec.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('journey_id')
    )
    op.create_table('steprun',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('journey_version', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('step_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', nurture.store.codec.UTCDateTime(timezone=True), nullable=False),
    sa.Column('until', nurture.store.codec.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steprun', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_steprun_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index('ix_steprun_enrollment', ['enrollment_id', 'id'], unique=False)

    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wait_step', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.execute("UPDATE enrollment SET wait_step = step_id WHERE state = 'waiting'")
    # blocked enrollments are live: the index of live enrollments includes them
    op.drop_index('uq_enrollment_live', table_name='enrollment')
    _live_index(LIVE_AFTER)

    # what was applied stays applied: each journey's latest version is its current one
    op.execute("""
        INSERT INTO journeystate (journey_id, version, paused, sweep_after, applied_at,
                                  removed_at, updated_at)
        SELECT v.journey_id, v.version, false, NULL, v.applied_at, NULL, v.applied_at
        FROM journeyversion v
        WHERE v.applied_at = (SELECT max(w.applied_at) FROM journeyversion w
                              WHERE w.journey_id = v.journey_id)
          AND v.version = (SELECT max(w.version) FROM journeyversion w
                           WHERE w.journey_id = v.journey_id AND w.applied_at = v.applied_at)
    """)


def downgrade() -> None:
    op.execute("UPDATE enrollment SET state = 'failed', last_error = 'blocked: ' || last_error "
               "WHERE state = 'blocked'")
    op.drop_index('uq_enrollment_live', table_name='enrollment')
    _live_index(LIVE_BEFORE)
    with op.batch_alter_table('enrollment', schema=None) as batch_op:
        batch_op.drop_column('wait_step')

    with op.batch_alter_table('steprun', schema=None) as batch_op:
        batch_op.drop_index('ix_steprun_enrollment')
        batch_op.drop_index(batch_op.f('ix_steprun_contact_id'))

    op.drop_table('steprun')
    op.drop_table('journeystate')
