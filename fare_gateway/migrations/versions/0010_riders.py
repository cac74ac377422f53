"""riders: check codes, rider accounts and their cards, loss reports, replacements,
disputes; the signature of each tap kept for its evidence

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rider_accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('deleted_ms', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rider_accounts')),
    sa.UniqueConstraint('email', name=op.f('uq_rider_accounts_email'))
    )
    op.create_table('card_check_codes',
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('code_hash', sa.String(length=200), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['card'], ['cards.card'], name=op.f('fk_card_check_codes_card_cards')),
    sa.PrimaryKeyConstraint('card', name=op.f('pk_card_check_codes'))
    )
    op.create_table('card_replacements',
    sa.Column('old_card', sa.String(length=32), nullable=False),
    sa.Column('new_card', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('moved', sa.BigInteger(), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['rider_accounts.id'], name=op.f('fk_card_replacements_account_id_rider_accounts')),
    sa.ForeignKeyConstraint(['new_card'], ['cards.card'], name=op.f('fk_card_replacements_new_card_cards')),
    sa.ForeignKeyConstraint(['old_card'], ['cards.card'], name=op.f('fk_card_replacements_old_card_cards')),
    sa.PrimaryKeyConstraint('old_card', name=op.f('pk_card_replacements')),
    sa.UniqueConstraint('new_card', name=op.f('uq_card_replacements_new_card'))
    )
    op.create_table('card_losses',
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reported_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['rider_accounts.id'], name=op.f('fk_card_losses_account_id_rider_accounts')),
    sa.ForeignKeyConstraint(['card'], ['cards.card'], name=op.f('fk_card_losses_card_cards')),
    sa.PrimaryKeyConstraint('card', name=op.f('pk_card_losses'))
    )
    op.create_table('disputes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('tap_id', sa.String(length=100), nullable=True),
    sa.Column('service_date', sa.String(length=10), nullable=True),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('answered_ms', sa.BigInteger(), nullable=True),
    sa.Column('decision', sa.String(length=8), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('answered_by', sa.String(length=32), nullable=True),
    sa.Column('entry_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['rider_accounts.id'], name=op.f('fk_disputes_account_id_rider_accounts')),
    sa.ForeignKeyConstraint(['card'], ['cards.card'], name=op.f('fk_disputes_card_cards')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disputes'))
    )
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disputes_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_disputes_card', ['card'], unique=False)
        batch_op.create_index('ix_disputes_created_ms', ['created_ms'], unique=False)

    op.create_table('rider_cards',
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('linked_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['rider_accounts.id'], name=op.f('fk_rider_cards_account_id_rider_accounts')),
    sa.ForeignKeyConstraint(['card'], ['cards.card'], name=op.f('fk_rider_cards_card_cards')),
    sa.PrimaryKeyConstraint('card', name=op.f('pk_rider_cards'))
    )
    with op.batch_alter_table('rider_cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rider_cards_account_id'), ['account_id'], unique=False)

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_index(batch_op.f('ix_api_tokens_account_id'), ['account_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_api_tokens_account_id_rider_accounts'), 'rider_accounts', ['account_id'], ['id'])

    with op.batch_alter_table('taps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sig', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('extra', sa.Text(), nullable=True))
        batch_op.create_index('ix_taps_vehicle_ts', ['vehicle_id', 'ts'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('taps', schema=None) as batch_op:
        batch_op.drop_index('ix_taps_vehicle_ts')
        batch_op.drop_column('extra')
        batch_op.drop_column('sig')

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_api_tokens_account_id_rider_accounts'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_api_tokens_account_id'))
        batch_op.drop_column('account_id')

    with op.batch_alter_table('rider_cards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rider_cards_account_id'))

    op.drop_table('rider_cards')
    with op.batch_alter_table('disputes', schema=None) as batch_op:
        batch_op.drop_index('ix_disputes_created_ms')
        batch_op.drop_index('ix_disputes_card')
        batch_op.drop_index(batch_op.f('ix_disputes_account_id'))

    op.drop_table('disputes')
    op.drop_table('card_losses')
    op.drop_table('card_replacements')
    op.drop_table('card_check_codes')
    op.drop_table('rider_accounts')
