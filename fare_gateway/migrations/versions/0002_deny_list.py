"""deny list

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 13:19:14.340503
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('denylist',
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('card', name=op.f('pk_denylist'))
    )
    op.create_table('denylist_changes',
    sa.Column('version', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('op', sa.String(length=1), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('changed_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_denylist_changes'))
    )
    with op.batch_alter_table('denylist_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_denylist_changes_card'), ['card'], unique=False)

    op.create_table('signing_keys',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('private_hex', sa.String(length=128), nullable=False),
    sa.Column('public_hex', sa.String(length=128), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_signing_keys'))
    )


def downgrade() -> None:
    op.drop_table('signing_keys')
    with op.batch_alter_table('denylist_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_denylist_changes_card'))

    op.drop_table('denylist_changes')
    op.drop_table('denylist')
