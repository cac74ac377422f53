"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 12:44:24.540642
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('kind', 'ref', name='uq_accounts_kind_ref')
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('expires_ms', sa.BigInteger(), nullable=True),
    sa.Column('revoked_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('devices',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('vehicle_id', sa.String(length=64), nullable=False),
    sa.Column('secret_hex', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_devices'))
    )
    op.create_table('entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('idem_key', sa.String(length=160), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('posted_ms', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('card', sa.String(length=32), nullable=True),
    sa.Column('tap_id', sa.String(length=100), nullable=True),
    sa.Column('reference', sa.String(length=64), nullable=True),
    sa.Column('service_date', sa.String(length=10), nullable=True),
    sa.Column('operator_id', sa.String(length=64), nullable=True),
    sa.Column('route_id', sa.String(length=64), nullable=True),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_entries')),
    sa.UniqueConstraint('idem_key', name=op.f('uq_entries_idem_key'))
    )
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.create_index('ix_entries_card_service_date', ['card', 'service_date'], unique=False)
        batch_op.create_index('ix_entries_posted_ms', ['posted_ms'], unique=False)
        batch_op.create_index('ix_entries_tap_id', ['tap_id'], unique=False)

    op.create_table('quarantine',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('received_ms', sa.BigInteger(), nullable=False),
    sa.Column('topic', sa.String(length=300), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=True),
    sa.Column('tap_id', sa.String(length=100), nullable=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantine'))
    )
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.create_index('ix_quarantine_received_ms', ['received_ms'], unique=False)

    op.create_table('routes',
    sa.Column('route_id', sa.String(length=64), nullable=False),
    sa.Column('agency_id', sa.String(length=64), nullable=False),
    sa.Column('short_name', sa.String(length=100), nullable=False),
    sa.Column('long_name', sa.String(length=300), nullable=False),
    sa.Column('color', sa.String(length=6), nullable=False),
    sa.Column('text_color', sa.String(length=6), nullable=False),
    sa.PrimaryKeyConstraint('route_id', name=op.f('pk_routes'))
    )
    op.create_table('taps',
    sa.Column('tap_id', sa.String(length=100), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('accepted', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('ts', sa.BigInteger(), nullable=False),
    sa.Column('vehicle_id', sa.String(length=64), nullable=False),
    sa.Column('route_id', sa.String(length=64), nullable=False),
    sa.Column('trip_id', sa.String(length=64), nullable=True),
    sa.Column('lat_e6', sa.Integer(), nullable=False),
    sa.Column('lon_e6', sa.Integer(), nullable=False),
    sa.Column('service_date', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('fare', sa.BigInteger(), nullable=False),
    sa.Column('received_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tap_id', name=op.f('pk_taps'))
    )
    with op.batch_alter_table('taps', schema=None) as batch_op:
        batch_op.create_index('ix_taps_card_service_date', ['card', 'service_date'], unique=False)
        batch_op.create_index('ix_taps_received_ms', ['received_ms'], unique=False)

    op.create_table('cards',
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_cards_account_id_accounts')),
    sa.PrimaryKeyConstraint('card', name=op.f('pk_cards')),
    sa.UniqueConstraint('account_id', name=op.f('uq_cards_account_id'))
    )
    op.create_table('postings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_postings_account_id_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['entries.id'], name=op.f('fk_postings_entry_id_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postings'))
    )
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.create_index('ix_postings_account_id', ['account_id'], unique=False)
        batch_op.create_index('ix_postings_entry_id', ['entry_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.drop_index('ix_postings_entry_id')
        batch_op.drop_index('ix_postings_account_id')

    op.drop_table('postings')
    op.drop_table('cards')
    with op.batch_alter_table('taps', schema=None) as batch_op:
        batch_op.drop_index('ix_taps_received_ms')
        batch_op.drop_index('ix_taps_card_service_date')

    op.drop_table('taps')
    op.drop_table('routes')
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index('ix_quarantine_received_ms')

    op.drop_table('quarantine')
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_index('ix_entries_tap_id')
        batch_op.drop_index('ix_entries_posted_ms')
        batch_op.drop_index('ix_entries_card_service_date')

    op.drop_table('entries')
    op.drop_table('devices')
    op.drop_table('api_tokens')
    op.drop_table('accounts')
