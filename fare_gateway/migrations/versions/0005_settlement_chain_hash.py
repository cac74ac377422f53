"""settlement chain hash

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 14:05:07.949877
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('settlements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_sha256', sa.String(length=64), nullable=False,
                                      server_default=''))



def downgrade() -> None:
    with op.batch_alter_table('settlements', schema=None) as batch_op:
        batch_op.drop_column('chain_sha256')

