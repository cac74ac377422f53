"""longer tap reason

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('taps', schema=None) as batch_op:
        batch_op.alter_column('reason', existing_type=sa.String(length=32),
                              type_=sa.String(length=64), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('taps', schema=None) as batch_op:
        batch_op.alter_column('reason', existing_type=sa.String(length=64),
                              type_=sa.String(length=32), existing_nullable=True)
