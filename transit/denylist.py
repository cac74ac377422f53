"""The deny list on the wire: signed snapshots and incremental changes, and how a
validator applies them (shared by the gateway, which publishes, and the agent).

Two retained messages:

- the **snapshot** on `{prefix}/net/denylist` (the contract's topic): every denied card
  now, at list version `version`, with the SHA-256 of the card list;
- the **changes** on `{prefix}/net/denylist/changes`: every change after `base` (a
  multiple of `SNAPSHOT_EVERY`) up to `version`, as `version,card,+|-` items joined by
  `;`, so that its size stays bounded.

A validator takes a snapshot, then follows the changes message: it replays, over its
snapshot, every change the message holds, in version order. Changes are absolute ("+"
denied, "-" allowed), so replaying ones its snapshot already includes does no harm,
and a change that committed late with a lower version still lands. A changes message
whose `base` is newer than the validator's snapshot needs a newer snapshot first (the
agent then subscribes to the snapshot topic again). Both messages are signed with the
network's Ed25519 key; validators hold the public key.

Both messages also name the key that signed them (`key_id`), and a validator's list
remembers the key it was built under. That is how a validator recovers from a list
signed with a stolen key: a forged version of 10**9 would make it ignore every real
update, so once the network key is rotated (`transit denylist rotate-key`) and the
validator holds the new public key, the version of a list built under another key is
dropped and the first validly signed message starts the list afresh. Its cards are kept
meanwhile, as provisional ones denied until the first snapshot under the validator's key
replaces them: only the version could be forged to hide updates, and a card a list
denies is safe to go on denying, so a validator restarted offline after a rotation (or
an upgrade) does not let every blocked card on until it connects.

A gateway of an earlier release signs its messages without `key_id`. A validator takes
such a message as its own key's when the signature verifies under that key: the
signature is what proves who signed it, the id only names the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from transit.wire import CARD_PATTERN, WireError

SNAPSHOT_EVERY = 512
FORMAT = 1
KEY_ID_DIGITS = 16


def cards_digest(cards: Iterable[str]) -> str:
    """SHA-256 of the sorted cards joined with commas: the snapshot's checksum."""
    return hashlib.sha256(",".join(sorted(cards)).encode()).hexdigest()


def snapshot_base(version: int) -> int:
    """The snapshot version a given list version is published against."""
    return version - version % SNAPSHOT_EVERY


def key_id(public_key: bytes) -> str:
    """The id a network key is known by: the first 16 hex digits of the SHA-256 of its
    raw public key (short enough to read aloud, long enough never to repeat)."""
    return hashlib.sha256(public_key).hexdigest()[:KEY_ID_DIGITS]


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k != "sig"}, sort_keys=True,
                      separators=(",", ":")).encode()


def new_key_pair() -> tuple[bytes, bytes]:
    """A new Ed25519 (private, public) key pair, raw 32 bytes each."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return private, public


def sign(body: dict[str, Any], private_key: bytes) -> dict[str, Any]:
    """The body with `key_id` (the signing key's) and `sig`: hex Ed25519 signature of
    its canonical form, the key id included."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(private_key)
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    named = dict(body, key_id=key_id(public))
    return dict(named, sig=key.sign(_canonical(named)).hex())


def verify(body: dict[str, Any], public_key: bytes) -> bool:
    """True when `sig` is the network key's signature of the rest of the body."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig = body.get("sig")
    if not isinstance(sig, str):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(bytes.fromhex(sig),
                                                              _canonical(body))
    except (InvalidSignature, ValueError):
        return False
    return True


def snapshot_message(base: int, cards: Iterable[str], ts: int, key: bytes) -> bytes:
    ordered = sorted(cards)
    body = {"v": FORMAT, "kind": "snapshot", "version": base, "ts": ts,
            "cards": ",".join(ordered), "sha256": cards_digest(ordered)}
    return json.dumps(sign(body, key), separators=(",", ":")).encode()


def changes_message(base: int, version: int, changes: list[tuple[int, str, str]], ts: int,
                    key: bytes) -> bytes:
    body = {"v": FORMAT, "kind": "changes", "base": base, "version": version, "ts": ts,
            "changes": ";".join(f"{v},{card},{op}" for v, card, op in changes)}
    return json.dumps(sign(body, key), separators=(",", ":")).encode()


@dataclass
class DenyList:
    """A validator's copy of the deny list.

    The list is the snapshot at `base` with every change after it replayed in version
    order. Replaying the whole changes message each time (not only what is new) means a
    change that committed late, with a lower version than one already seen, still lands.
    `key_id` is the key the list was built under (None before its first message).
    `provisional` holds the cards of a list whose version is no longer trusted (built
    under another key, or before lists named their key): they are denied too until the
    first snapshot under the current key replaces them.
    """

    key_id: str | None = None
    base: int = -1
    version: int = -1
    base_cards: frozenset[str] = frozenset()
    cards: set[str] = field(default_factory=set)
    last_changes: dict[str, Any] | None = None
    provisional: frozenset[str] = frozenset()

    def __contains__(self, card: str) -> bool:
        return card in self.cards or card in self.provisional

    def apply(self, payload: bytes, public_key: bytes) -> bool:
        """Apply a snapshot or changes message; True if the list changed.

        Raises WireError for a message that is malformed or not signed by the network.
        A message signed with another key than the one this list was built under starts
        the list afresh (see the module's docstring).
        """
        body = _decode(payload)
        if not verify(body, public_key):
            raise WireError("bad_signature", "deny list not signed by the network key")
        signer = key_id(public_key)
        named = body.get("key_id", signer)  # none named: a gateway of an earlier release
        if named != signer:
            raise WireError("bad_value", f"deny list names key {str(named)[:20]!r}"
                                         f" but is signed with key {signer}")
        kind = body.get("kind")
        if kind not in ("snapshot", "changes"):
            raise WireError("bad_value", f"unknown deny list message kind {kind!r}")
        before = self._state()
        if self.key_id != signer:
            self._start_afresh(signer)
        if kind == "snapshot":
            self._snapshot(body)
        else:
            self._changes(body)
        return self._state() != before

    def _state(self) -> tuple[object, ...]:
        return self.key_id, self.version, frozenset(self.cards), self.provisional

    def to_json(self) -> dict[str, Any]:
        """State to keep on disk between restarts."""
        return {"key_id": self.key_id, "base": self.base, "version": self.version,
                "base_cards": sorted(self.base_cards), "last_changes": self.last_changes,
                "provisional": sorted(self.provisional)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DenyList:
        out = cls(key_id=data.get("key_id"), base=int(data["base"]),
                  version=int(data["base"]), base_cards=frozenset(data["base_cards"]),
                  cards=set(data["base_cards"]),
                  provisional=frozenset(data.get("provisional", ())))
        if data.get("last_changes"):
            out._changes(data["last_changes"])
        return out

    @classmethod
    def restore(cls, data: dict[str, Any] | None, public_key: bytes | None) -> DenyList:
        """The list kept on disk if it was built under `public_key`; else an empty list
        that keeps the kept one's cards as provisional.

        A list built under another key (or before lists named their key) may hold a
        forged version that would hide every real update: its version is not trusted,
        its cards are still denied until the network's snapshot arrives.
        """
        if not data or public_key is None:
            return cls()
        kept = cls.from_json(data)
        if kept.key_id == key_id(public_key):
            return kept
        return cls(provisional=kept.provisional | kept.cards)

    def _start_afresh(self, signer: str) -> None:
        self.provisional |= self.cards
        self.key_id, self.base, self.version = signer, -1, -1
        self.base_cards, self.cards, self.last_changes = frozenset(), set(), None

    @property
    def needs_snapshot(self) -> bool:
        """True when the last changes message builds on a newer snapshot than ours."""
        return self.last_changes is not None and int(self.last_changes["base"]) > self.base

    def _snapshot(self, body: dict[str, Any]) -> None:
        version = body.get("version")
        raw = body.get("cards")
        if isinstance(version, bool) or not isinstance(version, int) or not isinstance(
                raw, str):
            raise WireError("wrong_type", "snapshot needs integer version and string cards")
        cards = frozenset(raw.split(",")) if raw else frozenset()
        if not all(CARD_PATTERN.fullmatch(c) for c in cards):
            raise WireError("bad_value", "snapshot holds an invalid card token")
        if cards_digest(cards) != body.get("sha256"):
            raise WireError("bad_value", "snapshot checksum does not match its cards")
        if version < self.base:
            return
        self.base, self.base_cards = version, cards
        self.version, self.cards = version, set(cards)
        self.provisional = frozenset()  # the network's own list replaces the kept cards
        if self.last_changes is not None:
            self._changes(self.last_changes)

    def _changes(self, body: dict[str, Any]) -> None:
        base, version, raw = body.get("base"), body.get("version"), body.get("changes")
        if not (isinstance(base, int) and isinstance(version, int) and isinstance(raw, str)):
            raise WireError("wrong_type", "changes need integer base/version, string changes")
        parsed = []
        for item in raw.split(";") if raw else []:
            parts = item.split(",")
            if len(parts) != 3 or not parts[0].isdigit() or parts[2] not in ("+", "-") \
                    or not CARD_PATTERN.fullmatch(parts[1]):
                raise WireError("bad_value", f"invalid change {item[:60]!r}")
            parsed.append((int(parts[0]), parts[1], parts[2]))
        if self.last_changes is None or version >= int(self.last_changes["version"]):
            self.last_changes = body
        if base > self.base or version < self.version:
            return  # builds on a snapshot we do not have yet, or older than what we hold
        cards = set(self.base_cards)
        for _v, card, op in sorted(parsed):
            if op == "+":
                cards.add(card)
            else:
                cards.discard(card)
        self.cards, self.version = cards, max(version, self.base)


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        raise WireError("malformed", "deny list is not JSON") from None
    if not isinstance(body, dict):
        raise WireError("malformed", "deny list is not a JSON object")
    return body
