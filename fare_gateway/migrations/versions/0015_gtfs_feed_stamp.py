"""the feed in force: a row each GTFS import writes, so that a gateway reads the
schedule again only when it changed

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('gtfs_feed',
    sa.Column('import_id', sa.String(length=32), nullable=False),
    sa.Column('imported_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('import_id', name=op.f('pk_gtfs_feed'))
    )


def downgrade() -> None:
    op.drop_table('gtfs_feed')
