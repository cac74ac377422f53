"""The deny list messages and how a validator applies them (transit/denylist.py)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from transit.denylist import DenyList, changes_message, snapshot_message
from transit.wire import WireError


def keypair() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return private, public


PRIVATE, PUBLIC = keypair()
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
    other_private, _ = keypair()
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
