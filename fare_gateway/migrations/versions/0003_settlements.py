"""settlements

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 13:45:00.834195
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('settlements',
    sa.Column('business_date', sa.String(length=10), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('previous_sha256', sa.String(length=64), nullable=True),
    sa.Column('entries_sha256', sa.String(length=64), nullable=False),
    sa.Column('entries', sa.BigInteger(), nullable=False),
    sa.Column('manifest', sa.Text(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('business_date', name=op.f('pk_settlements'))
    )


def downgrade() -> None:
    op.drop_table('settlements')
