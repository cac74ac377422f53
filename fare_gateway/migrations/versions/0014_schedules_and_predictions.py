"""schedules and predictions: stop times, service calendars and frequencies of the GTFS
feed, vehicle capacities, the learned segment times, headway thresholds

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('trip_stops', sa.Column('arrival_s', sa.Integer(), nullable=True))
    op.add_column('trip_stops', sa.Column('departure_s', sa.Integer(), nullable=True))
    op.create_table('service_calendar',
    sa.Column('service_id', sa.String(length=100), nullable=False),
    sa.Column('weekdays', sa.String(length=7), nullable=False),
    sa.Column('start_date', sa.String(length=8), nullable=False),
    sa.Column('end_date', sa.String(length=8), nullable=False),
    sa.PrimaryKeyConstraint('service_id', name=op.f('pk_service_calendar'))
    )
    op.create_table('service_dates',
    sa.Column('service_id', sa.String(length=100), nullable=False),
    sa.Column('date', sa.String(length=8), nullable=False),
    sa.Column('exception_type', sa.SmallInteger(), nullable=False),
    sa.PrimaryKeyConstraint('service_id', 'date', name=op.f('pk_service_dates'))
    )
    op.create_table('trip_frequencies',
    sa.Column('trip_id', sa.String(length=100), nullable=False),
    sa.Column('start_s', sa.Integer(), nullable=False),
    sa.Column('end_s', sa.Integer(), nullable=False),
    sa.Column('headway_s', sa.Integer(), nullable=False),
    sa.Column('exact_times', sa.SmallInteger(), nullable=False),
    sa.PrimaryKeyConstraint('trip_id', 'start_s', name=op.f('pk_trip_frequencies'))
    )
    op.create_table('vehicle_capacities',
    sa.Column('vehicle_id', sa.String(length=64), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('set_ms', sa.BigInteger(), nullable=False),
    sa.Column('set_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('vehicle_id', name=op.f('pk_vehicle_capacities'))
    )
    op.create_table('segment_days',
    sa.Column('pattern_id', sa.String(length=100), nullable=False),
    sa.Column('from_index', sa.Integer(), nullable=False),
    sa.Column('hour', sa.SmallInteger(), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('sum_ms', sa.BigInteger(), nullable=False),
    sa.Column('sumsq_s', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('pattern_id', 'from_index', 'hour', 'day',
                            name=op.f('pk_segment_days'))
    )
    op.create_index('ix_segment_days_day', 'segment_days', ['day'], unique=False)
    op.create_table('learned_days',
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('learned_ms', sa.BigInteger(), nullable=False),
    sa.Column('passages', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_learned_days'))
    )
    op.create_table('headway_thresholds',
    sa.Column('route_id', sa.String(length=64), nullable=False),
    sa.Column('bunched_pct', sa.SmallInteger(), nullable=False),
    sa.Column('gapped_pct', sa.SmallInteger(), nullable=False),
    sa.Column('set_ms', sa.BigInteger(), nullable=False),
    sa.Column('set_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('route_id', name=op.f('pk_headway_thresholds'))
    )


def downgrade() -> None:
    op.drop_table('headway_thresholds')
    op.drop_table('learned_days')
    op.drop_table('segment_days')
    op.drop_table('vehicle_capacities')
    op.drop_table('trip_frequencies')
    op.drop_table('service_dates')
    op.drop_table('service_calendar')
    with op.batch_alter_table('trip_stops') as batch:
        batch.drop_column('departure_s')
        batch.drop_column('arrival_s')
