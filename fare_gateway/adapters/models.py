"""Gateway tables: devices, the tap inbox, quarantine, API tokens, the deny list, and the
riders' side (check codes, accounts, linked cards, replacements, disputes)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ledger.adapters.db import Base, BigId


class Device(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The vehicle it rides on now: the newest of its `DeviceVehicle` rows, kept here for
    # the lists and the broker configuration, which want only that.
    vehicle_id: Mapped[str] = mapped_column(String(64))
    secret_hex: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # secret_hex holds the current secret: "v1:nonce:ciphertext" (AES-256-GCM, key from
    # TRANSIT_SECRET_KEY) or, without that key, plain hex. previous_secret likewise.
    previous_secret: Mapped[str | None] = mapped_column(String(128), nullable=True)
    previous_valid_until_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    key_created_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The number of the device's latest change (one more than the highest before it):
    # gateways on SQLite poll it to drop what they cached (fare_gateway.devices._announce).
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0",
                                            index=True)


class DeviceVehicle(Base):
    """From `from_ms` on, until its next row, the device rode on `vehicle_id`: the history
    that `transit devices move` adds to, so that a tap made on the old vehicle before the
    move is still judged by that vehicle (`fare_gateway.devices.KnownDevice.vehicle_at`)."""

    __tablename__ = "device_vehicles"

    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), primary_key=True)
    from_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    vehicle_id: Mapped[str] = mapped_column(String(64))


# The inbox rows the operators' exceptions view lists besides the quarantine.
EXCEPTION_STATUSES = "status IN ('unknown_card', 'rejected')"


class TapRecord(Base):
    """The inbox: one row per tap_id, inserted in the same transaction as its charge."""

    __tablename__ = "taps"
    __table_args__ = (Index("ix_taps_card_service_date", "card", "service_date"),
                      Index("ix_taps_received_ms", "received_ms"),
                      # A vehicle's taps around a time: a dispute's evidence of where the
                      # bus was (each tap carries its position).
                      Index("ix_taps_vehicle_ts", "vehicle_id", "ts"),
                      # The operators' exceptions view, newest first: a partial index, so
                      # the taps that are charged (nearly all) cost it nothing.
                      Index("ix_taps_exceptions", "received_ms",
                            postgresql_where=text(EXCEPTION_STATUSES),
                            sqlite_where=text(EXCEPTION_STATUSES)))

    tap_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    card: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(64))
    ts: Mapped[int] = mapped_column(BigInteger)
    vehicle_id: Mapped[str] = mapped_column(String(64))
    route_id: Mapped[str] = mapped_column(String(64))
    trip_id: Mapped[str | None] = mapped_column(String(64))
    lat_e6: Mapped[int] = mapped_column(Integer)
    lon_e6: Mapped[int] = mapped_column(Integer)
    service_date: Mapped[str] = mapped_column(String(10))
    # charged | not_charged | unknown_card | rejected (its `reason` the rule it broke)
    status: Mapped[str] = mapped_column(String(16))
    fare: Mapped[int] = mapped_column(BigInteger)  # what its first receipt said
    received_ms: Mapped[int] = mapped_column(BigInteger)
    # The validator's signature and any fields this version does not know (JSON), so
    # that the tap as it was signed can be shown again, verifiable, as a dispute's
    # evidence: the canonical form of the columns plus `extra` is what `sig` signed.
    sig: Mapped[str | None] = mapped_column(String(64), nullable=True)
    extra: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Keyed fingerprint of the row as admitted (every column but `fare`, which the
    # receipt fills in afterwards and which decides no money: the entries do).
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class FarePeriod(Base):
    """What a card's taps were charged in one week (Monday to Sunday of service dates)
    or calendar month: the checkpoint from which a new tap's weekly and monthly caps
    count, kept in step with the ledger in the batch that posts the charges, under the
    card's lock (fare_gateway/taps/periods.py). `transit reconcile` checks it against
    the ledger's entries."""

    __tablename__ = "fare_periods"

    card: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # week | month
    start: Mapped[str] = mapped_column(String(10), primary_key=True)  # its first service date
    total: Mapped[int] = mapped_column(BigInteger)


class QuarantineRecord(Base):
    """Messages that were refused: kept with the reason for inspection, never charged."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_received_ms", "received_ms"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    topic: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    device_id: Mapped[str | None] = mapped_column(String(64))
    tap_id: Mapped[str | None] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # first bytes only for huge ones
    # Its link in the quarantine's chain (ledger.chain): a record removed breaks it.
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    prev_mac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)
    # The rider account a `rider` token was issued to by a login (None for staff tokens).
    account_id: Mapped[int | None] = mapped_column(ForeignKey("rider_accounts.id"),
                                                   nullable=True, index=True)
    # The holder a staff token names (`transit tokens create --name`), shown in the audit
    # trail; and the row's keyed fingerprint: a token row inserted or changed behind the
    # application's back is refused.
    name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DenyEntry(Base):
    """A card validators must refuse now, and why (`balance` or `blocked`)."""

    __tablename__ = "denylist"

    card: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(BigInteger)
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DenyChange(Base):
    """Every change of the deny list, numbered: what validators replay."""

    __tablename__ = "denylist_changes"

    version: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    card: Mapped[str] = mapped_column(String(32), index=True)
    op: Mapped[str] = mapped_column(String(1))  # + | -
    reason: Mapped[str] = mapped_column(String(16))
    changed_ms: Mapped[int] = mapped_column(BigInteger)
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SigningKey(Base):
    """The network's Ed25519 key for what the gateway broadcasts (the deny list)."""

    __tablename__ = "signing_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Sealed like device secrets ("v1:nonce:ciphertext", bound to the key's id) under
    # TRANSIT_SECRET_KEY; plain hex only without that key (fare_gateway.denylist).
    private_hex: Mapped[str] = mapped_column(String(128))
    public_hex: Mapped[str] = mapped_column(String(128))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class CheckCode(Base):
    """A card's check code (contract section 7), only as a slow hash: printed on the card,
    shown once, it proves that whoever links the card holds it."""

    __tablename__ = "card_check_codes"

    card: Mapped[str] = mapped_column(ForeignKey("cards.card"), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class RiderAccount(Base):
    """A passenger's account. Deleting it erases the e-mail and the password hash (both
    set to None) and unlinks its cards; the row stays so that tokens, disputes and the
    ledger's history keep a valid reference."""

    __tablename__ = "rider_accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True, nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class RiderCard(Base):
    """A card linked to an account: a card belongs to one account at most."""

    __tablename__ = "rider_cards"

    card: Mapped[str] = mapped_column(ForeignKey("cards.card"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("rider_accounts.id"), index=True)
    linked_ms: Mapped[int] = mapped_column(BigInteger)


class CardReplacement(Base):
    """A lost card replaced by a new one: the ledger entry that moved its balance (None
    when there was nothing to move). One row per lost card, so a replacement asked twice
    finds the first and moves nothing again."""

    __tablename__ = "card_replacements"

    old_card: Mapped[str] = mapped_column(ForeignKey("cards.card"), primary_key=True)
    new_card: Mapped[str] = mapped_column(ForeignKey("cards.card"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("rider_accounts.id"))
    moved: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class CardLoss(Base):
    """A card its rider reported lost (the report that blocked it): only such a card may
    be replaced; one blocked by staff alone may not."""

    __tablename__ = "card_losses"

    card: Mapped[str] = mapped_column(ForeignKey("cards.card"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("rider_accounts.id"))
    reported_ms: Mapped[int] = mapped_column(BigInteger)


class Dispute(Base):
    """A rider's question about a charge, and its answer (contract section 7).

    Its state is never stored: it is judged from `created_ms` and `answered_ms` as of
    any time, so the 24-hour escalation and the 48-hour deadline need no job to run.
    """

    __tablename__ = "disputes"
    __table_args__ = (Index("ix_disputes_created_ms", "created_ms"),
                      Index("ix_disputes_card", "card"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("rider_accounts.id"), index=True)
    card: Mapped[str] = mapped_column(ForeignKey("cards.card"))
    tap_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    service_date: Mapped[str | None] = mapped_column(String(10), nullable=True)
    category: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    answered_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decision: Mapped[str | None] = mapped_column(String(8), nullable=True)  # refund | reject
    amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(32), nullable=True)  # token id
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the refund


class Adjustment(Base):
    """A manual adjustment of a card's balance under four eyes (contract section 9): asked
    by one finance holder, posted only when another approves it."""

    __tablename__ = "adjustments"
    __table_args__ = (Index("ix_adjustments_status", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    card: Mapped[str] = mapped_column(ForeignKey("cards.card"))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed: what the card gains
    reason: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | posted | rejected
    requested_ms: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(String(32))  # token id
    requested_name: Mapped[str] = mapped_column(String(100), default="")
    decided_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    decided_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The keyed fingerprint of the row (`fare_gateway.finance.adjustments.FIELDS`), set
    # on every write: a row inserted or edited with plain SQL is neither decided nor
    # passed by reconcile.
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)
