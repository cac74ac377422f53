"""device changes: a per-device change number the gateways poll on SQLite

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('change_seq', sa.BigInteger(), server_default='0',
                                      nullable=False))
        batch_op.create_index(batch_op.f('ix_devices_change_seq'), ['change_seq'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_change_seq'))
        batch_op.drop_column('change_seq')
