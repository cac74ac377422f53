"""tracks and alerts: every accepted position (partitioned by day on PostgreSQL), the
service alerts, and an index of the taps the operators' exceptions view lists

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

EXCEPTION_STATUSES = "status IN ('unknown_card', 'rejected')"


def upgrade() -> None:
    # The partitions themselves are made by the gateways as positions of each day come
    # (tracking/track.py): a fixed set made here would run out.
    op.create_table('vehicle_positions',
    sa.Column('vehicle_id', sa.String(length=64), nullable=False),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('route_id', sa.String(length=64), nullable=False),
    sa.Column('trip_id', sa.String(length=64), nullable=True),
    sa.Column('lat_e6', sa.Integer(), nullable=False),
    sa.Column('lon_e6', sa.Integer(), nullable=False),
    sa.Column('speed_cms', sa.Integer(), nullable=True),
    sa.Column('bearing_deg', sa.SmallInteger(), nullable=True),
    postgresql_partition_by='RANGE (ts)'
    )
    op.create_index('ix_vehicle_positions_vehicle_ts', 'vehicle_positions',
                    ['vehicle_id', 'ts'], unique=False)
    op.create_table('service_alerts',
    sa.Column('alert_id', sa.String(length=32), nullable=False),
    sa.Column('header', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('cause', sa.String(length=32), nullable=False),
    sa.Column('effect', sa.String(length=32), nullable=False),
    sa.Column('route_ids', sa.Text(), nullable=False),
    sa.Column('stop_ids', sa.Text(), nullable=False),
    sa.Column('start_ms', sa.BigInteger(), nullable=True),
    sa.Column('end_ms', sa.BigInteger(), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('ended_ms', sa.BigInteger(), nullable=True),
    sa.Column('ended_by', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('alert_id', name=op.f('pk_service_alerts'))
    )
    op.create_index('ix_taps_exceptions', 'taps', ['received_ms'], unique=False,
                    postgresql_where=sa.text(EXCEPTION_STATUSES),
                    sqlite_where=sa.text(EXCEPTION_STATUSES))


def downgrade() -> None:
    op.drop_index('ix_taps_exceptions', table_name='taps')
    op.drop_table('service_alerts')
    # Dropping the partitioned table drops its partitions.
    op.drop_table('vehicle_positions')
