"""The deny list messages and how a validator applies them (transit/denylist.py)."""

from __future__ import annotations

import json
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from transit.denylist import (
    DenyList,
    cards_digest,
    changes_message,
    key_id,
    new_key_pair,
    snapshot_message,
    verify,
)
from transit.wire import WireError

PRIVATE, PUBLIC = new_key_pair()
A, B, C = "04AAAAAAAA", "04BBBBBBBB", "04CCCCCCCC"


def test_snapshot_then_changes() -> None:
    dl = DenyList()
    assert dl.apply(snapshot_message(512, [A, B], 1, PRIVATE), PUBLIC)
    assert dl.cards == {A, B} and dl.version == 512
    assert dl.apply(changes_message(512, 515, [(513, C, "+"), (515, A, "-")], 2, PRIVATE),
                    PUBLIC)
    assert dl.cards == {B, C} and dl.version == 515


def test_a_change_that_committed_late_still_lands() -> None:
    dl = DenyList()
    dl.apply(snapshot_message(0, [], 1, PRIVATE), PUBLIC)
    dl.apply(changes_message(0, 3, [(1, A, "+"), (3, B, "+")], 2, PRIVATE), PUBLIC)
    # Version 2 committed after 3 had been published: the next message carries it.
    dl.apply(changes_message(0, 3, [(1, A, "+"), (2, C, "+"), (3, B, "+")], 3, PRIVATE),
             PUBLIC)
    assert dl.cards == {A, B, C}


def test_changes_wait_for_their_snapshot() -> None:
    dl = DenyList()
    dl.apply(snapshot_message(0, [A], 1, PRIVATE), PUBLIC)
    assert not dl.apply(changes_message(512, 513, [(513, B, "+")], 2, PRIVATE), PUBLIC)
    assert dl.cards == {A}
    dl.apply(snapshot_message(512, [C], 3, PRIVATE), PUBLIC)
    assert dl.cards == {B, C} and dl.version == 513


def test_an_older_snapshot_is_ignored_and_state_survives_a_restart() -> None:
    dl = DenyList()
    dl.apply(snapshot_message(1024, [A], 1, PRIVATE), PUBLIC)
    dl.apply(changes_message(1024, 1030, [(1030, B, "+")], 2, PRIVATE), PUBLIC)
    assert not dl.apply(snapshot_message(512, [C], 3, PRIVATE), PUBLIC)
    restored = DenyList.from_json(json.loads(json.dumps(dl.to_json())))
    assert restored.cards == {A, B} and restored.version == 1030


def test_forged_or_tampered_lists_are_refused() -> None:
    other_private, _ = new_key_pair()
    dl = DenyList()
    with pytest.raises(WireError) as exc:
        dl.apply(snapshot_message(0, [A], 1, other_private), PUBLIC)
    assert exc.value.reason == "bad_signature"
    body = json.loads(snapshot_message(0, [A], 1, PRIVATE))
    body["cards"] = B
    with pytest.raises(WireError):
        dl.apply(json.dumps(body).encode(), PUBLIC)
    for junk in (b"not json", b"[]", b'{"kind": "snapshot"}'):
        with pytest.raises(WireError):
            dl.apply(junk, PUBLIC)
    assert dl.cards == set() and dl.version == -1


# -- key ids: recovering from a list signed with a stolen key ------------------------------

NEW_PRIVATE, NEW_PUBLIC = new_key_pair()


def test_both_messages_name_the_key_that_signed_them() -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", key_id(PUBLIC)) and key_id(PUBLIC) != key_id(NEW_PUBLIC)
    for message in (snapshot_message(0, [A], 1, PRIVATE),
                    changes_message(0, 1, [(1, A, "+")], 1, PRIVATE)):
        body = json.loads(message)
        assert body["key_id"] == key_id(PUBLIC) and verify(body, PUBLIC)
        # The id is signed: changing it breaks the signature.
        assert not verify(dict(body, key_id=key_id(NEW_PUBLIC)), PUBLIC)


def test_a_message_naming_another_key_than_its_signer_is_refused() -> None:
    body = {"v": 1, "kind": "snapshot", "version": 0, "ts": 1, "cards": A,
            "sha256": cards_digest([A]), "key_id": key_id(NEW_PUBLIC)}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    sig = Ed25519PrivateKey.from_private_bytes(PRIVATE).sign(canonical).hex()
    dl = DenyList()
    with pytest.raises(WireError, match="names key"):
        dl.apply(json.dumps(dict(body, sig=sig)).encode(), PUBLIC)
    assert dl.cards == set() and dl.key_id is None


def test_a_forged_high_version_is_dropped_once_the_key_is_rotated() -> None:
    dl = DenyList()
    dl.apply(snapshot_message(0, [A], 1, PRIVATE), PUBLIC)
    # Signed with the stolen key: version 10**9 and an empty list.
    dl.apply(snapshot_message(10**9, [], 2, PRIVATE), PUBLIC)
    assert dl.version == 10**9 and dl.cards == set()
    # The real updates under that key are ignored from now on: the forgery's purpose.
    assert not dl.apply(snapshot_message(512, [A, B], 3, PRIVATE), PUBLIC)
    assert not dl.apply(changes_message(512, 513, [(513, C, "+")], 4, PRIVATE), PUBLIC)
    assert dl.cards == set()
    saved = json.loads(json.dumps(dl.to_json()))
    assert saved["key_id"] == key_id(PUBLIC)

    # Rotated: the validator restarts with the new public key and drops what it kept ...
    restored = DenyList.restore(saved, NEW_PUBLIC)
    assert (restored.key_id, restored.version, restored.cards) == (None, -1, set())
    # ... and follows the network's list again.
    assert restored.apply(snapshot_message(512, [A, B], 5, NEW_PRIVATE), NEW_PUBLIC)
    assert restored.apply(changes_message(512, 513, [(513, C, "+")], 6, NEW_PRIVATE),
                          NEW_PUBLIC)
    assert restored.cards == {A, B, C} and restored.key_id == key_id(NEW_PUBLIC)


def test_a_list_held_in_memory_starts_afresh_on_a_message_under_another_key() -> None:
    dl = DenyList()
    dl.apply(snapshot_message(10**9, [A], 1, PRIVATE), PUBLIC)
    # A changes message under the new key comes first: the old list goes, and the new
    # one waits for its snapshot.
    assert dl.apply(changes_message(512, 513, [(513, C, "+")], 2, NEW_PRIVATE), NEW_PUBLIC)
    assert dl.key_id == key_id(NEW_PUBLIC) and dl.cards == set() and dl.needs_snapshot
    dl.apply(snapshot_message(512, [B], 3, NEW_PRIVATE), NEW_PUBLIC)
    assert dl.cards == {B, C} and dl.version == 513
    # A message of the old key is now refused (a validator holds one public key).
    with pytest.raises(WireError):
        dl.apply(snapshot_message(10**9 + 1, [A], 4, PRIVATE), NEW_PUBLIC)


def test_restore_keeps_only_a_list_built_under_the_key_held() -> None:
    dl = DenyList()
    dl.apply(snapshot_message(512, [A], 1, PRIVATE), PUBLIC)
    dl.apply(changes_message(512, 514, [(514, B, "+")], 2, PRIVATE), PUBLIC)
    saved = json.loads(json.dumps(dl.to_json()))
    kept = DenyList.restore(saved, PUBLIC)
    assert (kept.key_id, kept.version, kept.cards) == (key_id(PUBLIC), 514, {A, B})
    assert DenyList.restore(None, PUBLIC).version == -1
    assert DenyList.restore(saved, None).cards == set()  # no key: nothing can be trusted
    # Kept before lists named their key: its version cannot be told from a forgery, so
    # only its cards are kept, as provisional ones.
    before_ids = {k: v for k, v in saved.items() if k not in ("key_id", "provisional")}
    upgraded = DenyList.restore(before_ids, PUBLIC)
    assert (upgraded.key_id, upgraded.version, upgraded.cards) == (None, -1, set())
    assert upgraded.provisional == {A, B} and A in upgraded and B in upgraded


def test_after_a_rotation_the_kept_cards_stay_denied_until_the_new_keys_snapshot() -> None:
    dl = DenyList()
    dl.apply(snapshot_message(512, [A, B], 1, PRIVATE), PUBLIC)
    dl.apply(changes_message(512, 514, [(513, C, "+"), (514, B, "-")], 2, PRIVATE), PUBLIC)
    assert dl.cards == {A, C}
    saved = json.loads(json.dumps(dl.to_json()))

    # Restarted with the new public key and no network: the version is dropped, the
    # cards are still refused, and stay so across another restart while offline.
    restored = DenyList.restore(saved, NEW_PUBLIC)
    assert (restored.key_id, restored.version) == (None, -1)
    assert A in restored and C in restored and B not in restored
    again = DenyList.restore(json.loads(json.dumps(restored.to_json())), NEW_PUBLIC)
    assert again.provisional == {A, C} and again.version == -1

    # Changes under the new key wait for their snapshot: the kept cards hold meanwhile.
    assert again.apply(changes_message(512, 513, [(513, B, "+")], 3, NEW_PRIVATE), NEW_PUBLIC)
    assert again.needs_snapshot and A in again and C in again
    # The network's snapshot replaces them: A was cleared while the bus was away.
    assert again.apply(snapshot_message(512, [C], 4, NEW_PRIVATE), NEW_PUBLIC)
    assert again.provisional == frozenset() and again.cards == {B, C} and A not in again
    assert DenyList.restore(json.loads(json.dumps(again.to_json())), NEW_PUBLIC).cards \
        == {B, C}


def test_a_list_started_afresh_in_memory_keeps_its_cards_until_the_snapshot() -> None:
    dl = DenyList()
    dl.apply(snapshot_message(0, [A], 1, PRIVATE), PUBLIC)
    dl.apply(changes_message(512, 513, [(513, C, "+")], 2, NEW_PRIVATE), NEW_PUBLIC)
    assert dl.cards == set() and A in dl
    dl.apply(snapshot_message(512, [B], 3, NEW_PRIVATE), NEW_PUBLIC)
    assert A not in dl and dl.cards == {B, C}


def unnamed(body: dict[str, object], private: bytes) -> bytes:
    """A deny-list message as a gateway of an earlier release signs it: no `key_id`."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    sig = Ed25519PrivateKey.from_private_bytes(private).sign(canonical).hex()
    return json.dumps(dict(body, sig=sig)).encode()


def test_a_message_without_key_id_is_taken_when_it_verifies_under_the_key_held() -> None:
    snapshot = {"v": 1, "kind": "snapshot", "version": 512, "ts": 1, "cards": f"{A},{B}",
                "sha256": cards_digest([A, B])}
    changes = {"v": 1, "kind": "changes", "base": 512, "version": 513, "ts": 2,
               "changes": f"513,{C},+"}
    dl = DenyList()
    assert dl.apply(unnamed(snapshot, PRIVATE), PUBLIC)
    assert dl.apply(unnamed(changes, PRIVATE), PUBLIC)
    assert dl.cards == {A, B, C} and dl.version == 513 and dl.key_id == key_id(PUBLIC)
    # Then the same gateway upgraded: its named messages continue the same list.
    assert not dl.apply(changes_message(512, 513, [(513, C, "+")], 3, PRIVATE), PUBLIC)
    # Unnamed is no way around the key: signed with another, it is refused.
    other_private, _ = new_key_pair()
    with pytest.raises(WireError) as exc:
        dl.apply(unnamed(dict(snapshot, version=1024, cards=""), other_private), PUBLIC)
    assert exc.value.reason == "bad_signature" and dl.cards == {A, B, C}
    # And a `key_id` that is there must name the signer, even when it is null.
    with pytest.raises(WireError, match="names key"):
        dl.apply(unnamed(dict(snapshot, key_id=None), PRIVATE), PUBLIC)
