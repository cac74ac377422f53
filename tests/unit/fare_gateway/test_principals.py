"""Who a token lets in: staff roles, admin over staff, and rider tokens apart."""

from __future__ import annotations

import pytest

from fare_gateway.tokens import Principal


@pytest.mark.parametrize(("role", "roles", "allowed"), [
    ("ops", ("ops",), True),
    ("ops", ("finance",), False),
    ("admin", ("finance",), True),  # admin may do what any staff role may
    ("admin", ("rider",), False),  # but has no rider account to act on
    ("finance", ("rider",), False),
    ("rider", ("rider",), True),
    ("rider", ("ops", "finance"), False),  # a rider token opens the rider endpoints only
    ("rider", ("admin",), False),
])
def test_roles(role: str, roles: tuple[str, ...], allowed: bool) -> None:
    assert Principal("t1", role, 1 if role == "rider" else None).may(*roles) is allowed
