"""gtfs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 13:51:11.321664
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agencies',
    sa.Column('agency_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('url', sa.String(length=300), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('agency_id', name=op.f('pk_agencies'))
    )
    op.create_table('shape_points',
    sa.Column('shape_id', sa.String(length=100), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('lat_e6', sa.Integer(), nullable=False),
    sa.Column('lon_e6', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('shape_id', 'seq', name=op.f('pk_shape_points'))
    )
    op.create_table('stops',
    sa.Column('stop_id', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('lat_e6', sa.Integer(), nullable=False),
    sa.Column('lon_e6', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('stop_id', name=op.f('pk_stops'))
    )
    op.create_table('trip_stops',
    sa.Column('trip_id', sa.String(length=100), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('stop_id', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('trip_id', 'seq', name=op.f('pk_trip_stops'))
    )
    op.create_table('trips',
    sa.Column('trip_id', sa.String(length=100), nullable=False),
    sa.Column('route_id', sa.String(length=64), nullable=False),
    sa.Column('service_id', sa.String(length=100), nullable=False),
    sa.Column('headsign', sa.String(length=200), nullable=False),
    sa.Column('direction_id', sa.Integer(), nullable=True),
    sa.Column('shape_id', sa.String(length=100), nullable=True),
    sa.PrimaryKeyConstraint('trip_id', name=op.f('pk_trips'))
    )
    with op.batch_alter_table('trips', schema=None) as batch_op:
        batch_op.create_index('ix_trips_route_id', ['route_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('trips', schema=None) as batch_op:
        batch_op.drop_index('ix_trips_route_id')

    op.drop_table('trips')
    op.drop_table('trip_stops')
    op.drop_table('stops')
    op.drop_table('shape_points')
    op.drop_table('agencies')
