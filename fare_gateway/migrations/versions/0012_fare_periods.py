"""fare periods: each card's week and month totals, the checkpoints of the weekly and
monthly caps, filled from the ledger's entries

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from datetime import date, timedelta
from itertools import groupby

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
    # and correction entries, which are the entries that name a tap. Read in card order
    # and written a chunk at a time, so that memory holds one chunk, whatever the size
    # of the ledger.
    rows = op.get_bind().execute(
        sa.text("SELECT card, service_date, SUM(amount) FROM entries "
                "WHERE tap_id IS NOT NULL AND card IS NOT NULL AND service_date IS NOT NULL "
                "GROUP BY card, service_date ORDER BY card")
        .execution_options(stream_results=True, yield_per=CHUNK))
    batch: list[dict[str, object]] = []
    for card, days in groupby(rows, key=lambda row: row[0]):
        totals: dict[tuple[str, str], int] = {}
        for _, service_date, amount in days:
            day = date.fromisoformat(service_date)
            for kind, start in (("week", day - timedelta(days=day.weekday())),
                                ("month", day.replace(day=1))):
                totals[(kind, start.isoformat())] = (totals.get((kind, start.isoformat()), 0)
                                                     + int(amount))
        batch += [{"card": card, "kind": k, "start": s, "total": t}
                  for (k, s), t in sorted(totals.items())]
        if len(batch) >= CHUNK:
            op.bulk_insert(periods, batch)
            batch = []
    if batch:
        op.bulk_insert(periods, batch)


def downgrade() -> None:
    op.drop_table('fare_periods')
