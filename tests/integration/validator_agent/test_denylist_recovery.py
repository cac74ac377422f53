"""A validator recovers from a deny list forged with a stolen signing key (issue 14, point 3).

The attack: with a database dump from before the key was sealed, anyone can sign a deny
list. One with version 10**9 makes every validator ignore the real list from then on
(each real update has a lower version), so a card blocked afterwards is still let on.
The way back: `transit denylist rotate-key`, and each validator restarted with the new
public key. A real `transit agent` goes through all of it here, on the real broker and
gateway; the attacker publishes the forgery on the broker like a gateway would.

A routine rotation must not open the gates meanwhile: a validator restarted with the new
key while it has no network keeps refusing the cards of the list it had.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from testbed.ports import free_port
from tests.conftest import System
from tests.support.agent import AgentProcess, listed, tap_at_reader, wait_kept
from tests.support.clients import MqttPeer
from transit.denylist import changes_message, key_id, snapshot_base, snapshot_message

FORGED = 10**9
BLOCKED_BEFORE = "04B0000000000001"  # blocked while the forgery held: let on
BLOCKED_AFTER = "04B0000000000002"  # blocked after the rotation: refused at the reader


def block(system: System, card: str, admin: str, action: str = "block") -> None:
    status, _body = system.http.post(f"/api/v1/cards/{card}/{action}", {}, admin)
    assert status == 200


def test_a_forged_high_version_is_left_behind_after_rotate_key(system: System,
                                                               tmp_path: Path) -> None:
    for card in (BLOCKED_BEFORE, BLOCKED_AFTER):
        system.issue(card, 50_000)
    admin = system.token("admin")
    key_file = tmp_path / "denylist.pub"
    old_public = bytes.fromhex(system.transit("denylist", "key").stdout.strip())
    key_file.write_text(old_public.hex() + "\n")
    agent = AgentProcess(system.env, system.device_id, system.secret, tmp_path / "bus",
                         extra_args=("--denylist-key-file", str(key_file))).start()
    try:
        real = wait_kept(agent, "arrived", lambda k: k["version"] >= 0)
        assert real["key_id"] == key_id(old_public)

        # The attacker signs with the key from the dump, and publishes as a gateway does.
        with system.engine().connect() as conn:
            stolen = bytes.fromhex(conn.execute(text(
                "SELECT private_hex FROM signing_keys")).scalar_one())
        base = snapshot_base(FORGED)
        attacker = MqttPeer(system.broker.url)
        topic = f"{system.prefix}/net/denylist"
        attacker.publish(topic, snapshot_message(base, [], 1, stolen), retain=True)
        attacker.publish(f"{topic}/changes", changes_message(base, FORGED, [], 1, stolen),
                         retain=True)
        attacker.close()
        wait_kept(agent, "took the forgery", lambda k: k["base"] == base)
        # It works: a card blocked now is still let on at the reader. The agent hears
        # the gateway's update when this observer does (the same broker, the same topic).
        observer = MqttPeer(system.broker.url)
        observer.subscribe(f"{topic}/changes")
        block(system, BLOCKED_BEFORE, admin)
        observer.wait_for(lambda m: any(f"{BLOCKED_BEFORE},+".encode() in p
                                        for _t, p in m))
        observer.close()
        assert tap_at_reader(agent, BLOCKED_BEFORE)["accepted"] is True

        # The way back: a new key, and the validator restarted with its public part.
        new_public = bytes.fromhex(system.transit("denylist", "rotate-key").stdout.strip())
        key_file.write_text(new_public.hex() + "\n")
        agent.stop()
        agent.restart()
        agent.wait_log("was not built under this deny-list key: its version dropped")
        back = wait_kept(agent, "came back under the new key",
                         lambda k: k["key_id"] == key_id(new_public))
        assert back["version"] < base and listed(back, BLOCKED_BEFORE)

        # It follows the real list again: a card blocked after the rotation is refused.
        block(system, BLOCKED_AFTER, admin)
        wait_kept(agent, f"listed {BLOCKED_AFTER}", lambda k: listed(k, BLOCKED_AFTER))
        for card in (BLOCKED_AFTER, BLOCKED_BEFORE):
            decision = tap_at_reader(agent, card)
            assert (decision["accepted"], decision["reason"]) == (False, "denylisted"), \
                decision
    finally:
        agent.close()
        print(f"--- agent log ---\n{agent.log_tail(6000)}")


def test_a_validator_restarted_offline_after_rotate_key_still_refuses_its_blocked_cards(
        system: System, tmp_path: Path) -> None:
    blocked, cleared = "04B0000000000003", "04B0000000000004"
    admin = system.token("admin")
    for card in (blocked, cleared):
        system.issue(card, 50_000)
        block(system, card, admin)
    key_file = tmp_path / "denylist.pub"
    key_file.write_text(system.transit("denylist", "key").stdout.strip() + "\n")
    agent = AgentProcess(system.env, system.device_id, system.secret, tmp_path / "bus",
                         extra_args=("--denylist-key-file", str(key_file))).start()
    try:
        wait_kept(agent, "listed both cards",
                  lambda k: listed(k, blocked) and listed(k, cleared))
        new_public = bytes.fromhex(system.transit("denylist", "rotate-key").stdout.strip())
        key_file.write_text(new_public.hex() + "\n")
        agent.stop()
        block(system, cleared, admin, "unblock")  # while the bus is away

        # At the depot with no network: nothing listens where the agent looks for its broker.
        agent.env = dict(system.env, TRANSIT_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
        agent.restart()
        agent.wait_log("was not built under this deny-list key: its version dropped, "
                       "its 2 cards denied")
        for card in (blocked, cleared):
            decision = tap_at_reader(agent, card)
            assert (decision["accepted"], decision["reason"]) == (False, "denylisted"), \
                decision

        # Back on the network: the snapshot under the new key replaces the kept cards.
        agent.stop()
        agent.env = dict(system.env)
        agent.restart()
        back = wait_kept(agent, "took the new key's snapshot",
                         lambda k: k["key_id"] == key_id(new_public) and k["base"] >= 0)
        assert back["provisional"] == [] and listed(back, blocked)
        assert not listed(back, cleared)
        assert tap_at_reader(agent, cleared)["accepted"] is True
        decision = tap_at_reader(agent, blocked)
        assert (decision["accepted"], decision["reason"]) == (False, "denylisted"), decision
    finally:
        agent.close()
        print(f"--- agent log ---\n{agent.log_tail(6000)}")
