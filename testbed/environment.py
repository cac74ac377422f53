"""Where the harness finds the machine's shared services and the data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("TRANSIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRANSIT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def transjakarta_feed() -> Path:
    """The real Transjakarta GTFS feed that sits beside the project (never committed).

    `TRANSIT_GTFS_FEED` names it; otherwise `shared/data/gtfs/` is looked for next to
    the checkout and in its parent folders.
    """
    named = os.environ.get("TRANSIT_GTFS_FEED")
    if named:
        return Path(named)
    for folder in [ROOT, *ROOT.parents, Path("/work")]:
        candidate = folder / "shared" / "data" / "gtfs" / "transjakarta-2021.zip"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("the Transjakarta feed (shared/data/gtfs/transjakarta-2021.zip) "
                            "is not beside the checkout; set TRANSIT_GTFS_FEED")
