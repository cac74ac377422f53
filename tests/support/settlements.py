"""What tests expect of a settlement manifest."""

from __future__ import annotations

# The totals every manifest carries (contract section 6), whether or not the day has any.
LINE_TYPES = ("fare", "correction", "topup", "refund", "transfer", "adjustment")


def totals(**amounts: int) -> dict[str, int]:
    """A manifest's `totals`: the amounts given, 0 for every other line type."""
    unknown = set(amounts) - set(LINE_TYPES)
    assert not unknown, f"no such line type: {sorted(unknown)}"
    return {t: amounts.get(t, 0) for t in LINE_TYPES}
