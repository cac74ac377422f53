"""device vehicles: which vehicle each device rode on, from when

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('device_vehicles',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('from_ms', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('vehicle_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['devices.device_id'], name=op.f('fk_device_vehicles_device_id_devices')),
    sa.PrimaryKeyConstraint('device_id', 'from_ms', name=op.f('pk_device_vehicles'))
    )
    # What a device rode on before an earlier move was not kept: each rides on its
    # current vehicle from its registration on.
    op.execute("INSERT INTO device_vehicles (device_id, from_ms, vehicle_id) "
               "SELECT device_id, created_ms, vehicle_id FROM devices")


def downgrade() -> None:
    op.drop_table('device_vehicles')
