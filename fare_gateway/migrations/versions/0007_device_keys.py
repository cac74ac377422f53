"""device keys: previous secret with a grace period, key creation time

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_secret', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('previous_valid_until_ms', sa.BigInteger(),
                                      nullable=True))
        batch_op.add_column(sa.Column('key_created_ms', sa.BigInteger(), nullable=True))
    op.execute("UPDATE devices SET key_created_ms = created_ms WHERE key_created_ms IS NULL")


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('key_created_ms')
        batch_op.drop_column('previous_valid_until_ms')
        batch_op.drop_column('previous_secret')
