"""A fare policy changed honestly: the gateway that first loads it brings the deny list in
line with its lowest fares, and `transit reconcile` judges balances by the policy the
gateways run, not by whatever `TRANSIT_FARES` the command happens to be given."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from fare_gateway.adapters.models import DenyEntry
from fare_gateway.cards import issue_card, topup_card
from fare_gateway.fares.loaded import record_loaded
from fare_gateway.fares.policy import policy_from_setting
from fare_gateway.wiring import Core
from ledger.audit import Actor
from tests.support.commands import transit_here
from transit.settings import Settings

KEY = "6b" * 32
CARD = "04AA000000000001"


def test_a_new_policy_moves_the_deny_list_and_reconcile_follows_the_policy_in_force(
        pg_url: str, tmp_path: Path) -> None:
    built_in = (Path(__file__).parents[3] / "fare_gateway" / "fares" / "surabaya.toml")
    dearer = tmp_path / "dearer.toml"  # the early-morning fare 2,000 -> 3,000
    dearer.write_text(built_in.read_text().replace("regular = 2000", "regular = 3000"))
    env = {"TRANSIT_DATABASE_URL": pg_url, "TRANSIT_SECRET_KEY": KEY}
    transit_here("db", "upgrade", env=env)
    core = Core.build(Settings.from_env(env))
    gateway = Actor.system("gw-test")
    try:
        with core.sessions.begin() as s:
            issue_card(s, core.ledger, core.policy, CARD, "regular", actor=Actor.command())
            topup_card(s, core.ledger, core.policy, CARD, 2500, "kiosk-1",
                       actor=Actor.command())
        assert record_loaded(core.sessions, core.ledger.fingerprints, gateway, "",
                             core.policy)

        def listed() -> bool:
            with core.sessions() as s:
                return s.get(DenyEntry, CARD) is not None

        def reconcile(fares: str) -> tuple[int, list[str]]:
            done = transit_here("reconcile", env={**env, "TRANSIT_FARES": fares},
                                check=False)
            return done.returncode, [line for line in done.stdout.splitlines()
                                     if line.startswith(("MISMATCH", "warning"))]

        assert not listed()  # 2,500 pays the lowest fare, 2,000
        assert reconcile("") == (0, [])

        # A gateway starts with the dearer policy: the card, short of 3,000, is listed.
        dearer_policy = policy_from_setting(str(dearer))
        assert record_loaded(core.sessions, core.ledger.fingerprints, gateway,
                             str(dearer), dearer_policy)
        assert listed()
        # The same policy again (another gateway, a restart): nothing recorded or moved.
        assert not record_loaded(core.sessions, core.ledger.fingerprints, gateway,
                                 str(dearer), dearer_policy)
        assert reconcile(str(dearer)) == (0, [])
        # Run with the old policy, reconcile says what it could not judge, and passes.
        code, lines = reconcile("")
        assert code == 0 and len(lines) == 1, lines
        assert "the gateways run the fare policy" in lines[0] and "blocked cards only" in lines[0]

        # Tampering is still caught under the policy in force: the card dropped from the list.
        with core.engine.begin() as c:
            c.execute(DenyEntry.__table__.delete().where(DenyEntry.card == CARD))
            c.exec_driver_sql("DELETE FROM denylist_changes WHERE card = %s", (CARD,))
        code, lines = reconcile(str(dearer))
        assert code == 1 and any(CARD in line and "below its lowest fare (3000)" in line
                                 for line in lines), lines
        with core.sessions() as s:
            assert s.scalar(select(DenyEntry.card)) is None
    finally:
        core.engine.dispose()
