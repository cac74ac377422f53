"""fare periods: each card's week and month totals, the checkpoints of the weekly and
monthly caps, filled from the ledger's entries

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

CHUNK = 10_000


def upgrade() -> None:
    periods = op.create_table('fare_periods',
    sa.Column('card', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('start', sa.String(length=10), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('card', 'kind', 'start', name=op.f('pk_fare_periods'))
    )
    # What each card's taps were charged per week and month so far: the net of the fare
    # and correction entries, which are the entries that name a tap.
    totals: dict[tuple[str, str, str], int] = {}
    rows = op.get_bind().execute(sa.text(
        "SELECT card, service_date, SUM(amount) FROM entries "
        "WHERE tap_id IS NOT NULL AND card IS NOT NULL AND service_date IS NOT NULL "
        "GROUP BY card, service_date"))
    for card, service_date, amount in rows:
        day = date.fromisoformat(service_date)
        for kind, start in (("week", day - timedelta(days=day.weekday())),
                            ("month", day.replace(day=1))):
            key = (card, kind, start.isoformat())
            totals[key] = totals.get(key, 0) + int(amount)
    batch = [{"card": c, "kind": k, "start": s, "total": t}
             for (c, k, s), t in sorted(totals.items())]
    for i in range(0, len(batch), CHUNK):
        op.bulk_insert(periods, batch[i:i + CHUNK])


def downgrade() -> None:
    op.drop_table('fare_periods')
