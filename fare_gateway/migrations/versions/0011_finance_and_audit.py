"""finance and audit: the audit trail and the heads of chained tables, adjustments under
four eyes, named tokens, and keyed fingerprints of the rows that decide money

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at_ms', sa.BigInteger(), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.String(length=64), nullable=False),
    sa.Column('actor_name', sa.String(length=100), nullable=False),
    sa.Column('actor_role', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=48), nullable=False),
    sa.Column('subject', sa.String(length=160), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('prev_mac', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_at_ms', ['at_ms'], unique=False)

    op.create_table('chain_heads',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('last_mac', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_chain_heads'))
    )
    op.create_table('adjustments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_ms', sa.BigInteger(), nullable=False),
    sa.Column('requested_by', sa.String(length=32), nullable=False),
    sa.Column('requested_name', sa.String(length=100), nullable=False),
    sa.Column('decided_ms', sa.BigInteger(), nullable=True),
    sa.Column('decided_by', sa.String(length=32), nullable=True),
    sa.Column('decided_name', sa.String(length=100), nullable=True),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.Column('mac', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['card'], ['cards.card'], name=op.f('fk_adjustments_card_cards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adjustments')),
    sa.UniqueConstraint('reference', name=op.f('uq_adjustments_reference'))
    )
    with op.batch_alter_table('adjustments', schema=None) as batch_op:
        batch_op.create_index('ix_adjustments_status', ['status'], unique=False)

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=100), server_default='', nullable=False))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))

    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('head', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))

    with op.batch_alter_table('denylist', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))

    with op.batch_alter_table('denylist_changes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))

    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prev_mac', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))

    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('prev_mac', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_quarantine_chain_seq'), ['chain_seq'])

    with op.batch_alter_table('routes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))

    with op.batch_alter_table('settlements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))

    with op.batch_alter_table('taps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mac', sa.String(length=64), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('taps', schema=None) as batch_op:
        batch_op.drop_column('mac')

    with op.batch_alter_table('settlements', schema=None) as batch_op:
        batch_op.drop_column('mac')

    with op.batch_alter_table('routes', schema=None) as batch_op:
        batch_op.drop_column('mac')

    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_quarantine_chain_seq'), type_='unique')
        batch_op.drop_column('mac')
        batch_op.drop_column('prev_mac')
        batch_op.drop_column('chain_seq')

    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_column('mac')
        batch_op.drop_column('prev_mac')

    with op.batch_alter_table('denylist_changes', schema=None) as batch_op:
        batch_op.drop_column('mac')

    with op.batch_alter_table('denylist', schema=None) as batch_op:
        batch_op.drop_column('mac')

    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_column('mac')
        batch_op.drop_column('head')

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('mac')
        batch_op.drop_column('name')

    with op.batch_alter_table('adjustments', schema=None) as batch_op:
        batch_op.drop_index('ix_adjustments_status')

    op.drop_table('adjustments')
    op.drop_table('chain_heads')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_at_ms')

    op.drop_table('audit_log')
