"""`python -m transit`: the same as the `transit` command."""

from __future__ import annotations

import sys

from transit.cli import main

if __name__ == "__main__":
    sys.exit(main())
