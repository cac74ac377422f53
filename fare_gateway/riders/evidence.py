"""A dispute's evidence (contract section 7): the tap as it was signed, what the gateway
answered, where the vehicle was around it, the validator's state then, and the fare
explanation.

Everything is read from what the gateway recorded. The tap is put back together from
its inbox row (the columns, the fields this version does not know, and the signature:
the canonical form of the first two is what the signature signed, `transit.wire`) and
verified again with the device's key. Positions come from `PositionSource`s: the
positions carried by the vehicle's taps in the inbox, merged (where the gateway runs
with tracking) with the vehicle's recent trail of GPS positions in Redis, each point
saying which it is; the trail keeps only the last TRAIL points, so a durable track
would plug in through the same small port.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from fare_gateway.adapters.models import Device, DeviceVehicle, TapRecord
from fare_gateway.devices import Binding, KnownDevice, SecretKeyError, unseal
from fare_gateway.fares.engine import (
    NOTHING_EARLIER,
    Charge,
    DayPrice,
    Earlier,
    PricedTap,
    price_day,
)
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.riders import explain
from fare_gateway.riders.statement import boarding as next_boarding
from fare_gateway.riders.statement import day_totals, period_start
from fare_gateway.riders.times import iso_z
from ledger.adapters.db import READS_ONLY, Sessions
from transit.wire import Tap

log = logging.getLogger(__name__)
AROUND_MS = 10 * 60_000  # the positions shown: 10 minutes either side of the tap
MAX_POINTS = 1000  # a bus taps a few hundred times in 20 minutes at the very most
REJECTED = "rejected"  # fare_gateway.taps.planning.REJECTED: broke a rule, says nothing


@dataclass(frozen=True)
class TrackPoint:
    """Where a vehicle was at `ts` (epoch ms), and what recorded it."""

    ts: int
    lat_e6: int
    lon_e6: int
    device_id: str | None  # the validator whose tap carried it; None for a GPS point
    source: str  # "tap": carried by a tap in the inbox; "track": the vehicle's GPS trail


class PositionSource(Protocol):
    """Where a vehicle was between two instants, oldest first."""

    def around(self, vehicle_id: str, from_ms: int, to_ms: int) -> list[TrackPoint]: ...


class InboxTrack:
    """Positions from the taps in the inbox: every tap carries its validator's lat/lon.

    Taps the gateway rejected (another vehicle's, a time outside the window) are left
    out: their vehicle and time are exactly what is not believed.
    """

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def around(self, vehicle_id: str, from_ms: int, to_ms: int) -> list[TrackPoint]:
        """The vehicle's tap positions in [from_ms, to_ms], oldest first."""
        t = TapRecord
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)  # SQLite: no write lock
            rows = session.execute(
                select(t.ts, t.lat_e6, t.lon_e6, t.device_id)
                .where(t.vehicle_id == vehicle_id, t.ts >= from_ms, t.ts <= to_ms,
                       t.status != REJECTED)
                .order_by(t.ts, t.device_id, t.seq).limit(MAX_POINTS)).all()
        return [TrackPoint(ts, lat, lon, device, "tap") for ts, lat, lon, device in rows]


class Trail(Protocol):
    """The vehicle's recent GPS positions, newest first, as (ts, lat_e6, lon_e6)
    (tracking.store.TrackingStore)."""

    def trail(self, vehicle_id: str) -> list[tuple[int, int, int]]: ...


class TrailTrack:
    """Positions from the vehicle's recent GPS trail, kept in Redis by tracking; only the
    last few dozen points are kept there, so an older tap finds none."""

    def __init__(self, store: Trail) -> None:
        self.store = store

    def around(self, vehicle_id: str, from_ms: int, to_ms: int) -> list[TrackPoint]:
        """The trail's points in [from_ms, to_ms], oldest first; none while Redis fails
        (the tap points still show)."""
        try:
            points = self.store.trail(vehicle_id)
        except (RedisError, OSError) as exc:
            log.warning("vehicle trail left out of a dispute's evidence: %s", exc)
            return []
        return sorted((TrackPoint(ts, lat, lon, None, "track")
                       for ts, lat, lon in points if from_ms <= ts <= to_ms),
                      key=lambda p: p.ts)


class MergedTrack:
    """Several sources' points in one list, oldest first, each keeping its source."""

    def __init__(self, sources: Sequence[PositionSource]) -> None:
        self.sources = tuple(sources)

    def around(self, vehicle_id: str, from_ms: int, to_ms: int) -> list[TrackPoint]:
        """Every source's points in [from_ms, to_ms], by time (taps before the trail at
        the same instant)."""
        points = [(p.ts, rank, i, p) for rank, source in enumerate(self.sources)
                  for i, p in enumerate(source.around(vehicle_id, from_ms, to_ms))]
        return [p for *_, p in sorted(points, key=lambda x: x[:3])][:MAX_POINTS]


def priced(row: TapRecord) -> PricedTap:
    """The facts of an inbox row that its price depends on."""
    return PricedTap(row.tap_id, row.device_id, row.seq, row.ts, row.vehicle_id,
                     row.route_id, row.kind, row.lat_e6, row.lon_e6)


def day_taps(session: Session, card: str, service_date: str) -> list[TapRecord]:
    """The card's taps of a service day in event order, but for those the gateway
    rejected."""
    return list(session.scalars(
        select(TapRecord).where(TapRecord.card == card, TapRecord.service_date == service_date,
                                TapRecord.status != REJECTED)
        .order_by(TapRecord.ts, TapRecord.device_id, TapRecord.seq)))


def earlier_on(session: Session, card: str, service_date: str) -> Earlier:
    """What the ledger holds for the card's taps on the days before this one in its week
    and in its month: where the day's weekly and monthly caps start."""
    totals = day_totals(session.connection(), card, period_start([service_date]),
                        service_date)
    return totals.earlier(service_date)


def price_of_day(policy: FarePolicy, category: str, taps: Iterable[TapRecord],
                 earlier: Earlier | None = None) -> DayPrice:
    """What the fare rules charge for the day's charged taps now, the weekly and monthly
    caps starting from `earlier`: by default what the ledger holds for the card's
    earlier days of the week and month, read in the rows' own session (rows held by
    none, as a test builds them, have nothing before them)."""
    rows = list(taps)
    if earlier is None:
        session = object_session(rows[0]) if rows else None
        earlier = (NOTHING_EARLIER if session is None else
                   earlier_on(session, rows[0].card, rows[0].service_date))
    return price_day(policy, category, [priced(t) for t in rows if t.status == "charged"],
                     earlier)


# -- the tap and its receipt --------------------------------------------------------------------

def signed_tap(row: TapRecord) -> Tap:
    """The tap as its validator signed it, put back together from its inbox row."""
    extra = json.loads(row.extra) if row.extra else {}
    return Tap(device_id=row.device_id, seq=row.seq, vehicle_id=row.vehicle_id,
               route_id=row.route_id, card=row.card, kind=row.kind, accepted=row.accepted,
               ts=row.ts, lat_e6=row.lat_e6, lon_e6=row.lon_e6, trip_id=row.trip_id,
               reason=row.reason, sig=row.sig, extra=extra)


def signed_with(tap: Tap, device: Device | None, key: bytes | None) -> str | None:
    """Which of the device's keys the signature verifies with now (`current` or
    `previous`), `none` when neither, None when the keys cannot be opened here."""
    if device is None:
        return "none"
    try:
        keys = [("current", unseal(device.secret_hex, key, device.device_id))]
        if device.previous_secret is not None:
            keys.append(("previous", unseal(device.previous_secret, key, device.device_id)))
    except SecretKeyError:
        return None
    return next((name for name, secret in keys if tap.verify(secret)), "none")


def tap_evidence(row: TapRecord, device: Device | None, key: bytes | None) -> dict[str, Any]:
    """The tap as received: its signed message, the canonical bytes a validator sends,
    and whether the signature still verifies with the device's key."""
    tap = signed_tap(row)
    verdict = signed_with(tap, device, key)
    return {"message": tap.to_dict(), "canonical": tap.encode().decode(),
            "signature_valid": None if verdict is None else verdict != "none",
            "signed_with": verdict if verdict not in (None, "none") else None,
            "received_at": iso_z(row.received_ms)}


def told_status(row: TapRecord) -> str:
    """What the receipt said: the row's status, except that a tap denied at the reader is
    told `not_charged` whether or not its card exists (fare_gateway.taps.planning)."""
    if row.status == "unknown_card" and not row.accepted:
        return "not_charged"
    return row.status


def receipt_evidence(row: TapRecord, currency: str) -> dict[str, Any]:
    """The gateway's answer to the tap, as recorded (the receipt's signature is not kept)."""
    return {"tap_id": row.tap_id, "status": told_status(row), "recorded_status": row.status,
            "fare": row.fare, "currency": currency, "reason": row.reason,
            "received_at": iso_z(row.received_ms), "signed": False}


# -- the validator ------------------------------------------------------------------------------

def _neighbour(session: Session, device_id: str, seq: int) -> dict[str, Any] | None:
    row = session.get(TapRecord, f"{device_id}:{seq}") if seq > 0 else None
    if row is None:
        return None
    return {"tap_id": row.tap_id, "seq": row.seq, "ts": iso_z(row.ts), "kind": row.kind,
            "status": row.status, "received_at": iso_z(row.received_ms)}


def validator_evidence(session: Session, row: TapRecord, device: Device | None
                       ) -> dict[str, Any]:
    """The validator at the tap's time, as far as recorded: the vehicle it rode on then,
    its registration, and its taps just before and after (a gap shows a missing seq)."""
    before = _neighbour(session, row.device_id, row.seq - 1)
    after = _neighbour(session, row.device_id, row.seq + 1)
    out: dict[str, Any] = {"device_id": row.device_id, "registered": device is not None,
                           "vehicle_id": None, "vehicle_now": None, "status": None,
                           "status_since": None, "registered_at": None,
                           "key_created_at": None, "previous_tap": before, "next_tap": after,
                           "seq_gap_before": row.seq > 1 and before is None,
                           "seq_gap_after": after is None}
    if device is None:
        return out
    history = tuple(Binding(f, v) for f, v in session.execute(
        select(DeviceVehicle.from_ms, DeviceVehicle.vehicle_id)
        .where(DeviceVehicle.device_id == device.device_id).order_by(DeviceVehicle.from_ms)))
    known = KnownDevice(device.device_id, device.vehicle_id, b"", device.status == "active",
                        history=history)
    out.update(vehicle_id=known.vehicle_at(row.ts), vehicle_now=device.vehicle_id,
               status=device.status,
               # A revocation's time is not recorded; an active device has been since it
               # was registered.
               status_since=iso_z(device.created_ms) if device.status == "active" else None,
               registered_at=iso_z(device.created_ms),
               key_created_at=iso_z(device.key_created_ms or device.created_ms))
    return out


def positions_evidence(track: PositionSource, row: TapRecord) -> list[dict[str, Any]]:
    """The vehicle's positions from 10 minutes before the tap to 10 minutes after it."""
    return [{"at": iso_z(p.ts), "lat_e6": p.lat_e6, "lon_e6": p.lon_e6,
             "device_id": p.device_id, "source": p.source}
            for p in track.around(row.vehicle_id, row.ts - AROUND_MS, row.ts + AROUND_MS)]


# -- the explanation ----------------------------------------------------------------------------
# The sentences are the statement's own (fare_gateway.riders.explain); only the ledger's
# figure, where it differs from the engine's, is added for whoever weighs a refund.

UNISSUED = {"id": "Kartu belum diterbitkan saat tap ini; tidak ditagih.",
            "en": "The card was not issued yet at the time of this tap; not charged."}
HELD = {"id": " Buku besar mencatat {amount} untuk tap ini.",
        "en": " The ledger holds {amount} for this tap."}


def boarding(policy: FarePolicy, charge: Charge | None, taps: Iterable[TapRecord]
             ) -> explain.Boarding | None:
    """The day's entry that stood in for an inferred exit's missing tap-out, if any."""
    if charge is None or charge.pricing != "inferred_exit":
        return None
    return next_boarding(policy, charge, {t.tap_id: t for t in taps})


def explain_charge(row: TapRecord, charge: Charge | None, held: int, lang: str,
                   boarded: explain.Boarding | None = None) -> str:
    """One sentence saying why the tap cost what it did, in Indonesian or English, and
    what the ledger holds for it when that differs; `boarded` is the next entry that
    stood in for its missing tap-out (`boarding`), when the fare was worked out so."""
    lang = lang if lang in explain.LANGUAGES else explain.DEFAULT_LANGUAGE
    if not row.accepted:
        return explain.denied_sentence(row.reason, lang)
    if row.status == "unknown_card":
        return UNISSUED[lang]
    text = explain.tap_sentence(charge, lang, boarded=boarded)
    if charge is not None and held != charge.amount:
        text += HELD[lang].format(amount=explain.rupiah(held))
    return text


def explain_day(policy: FarePolicy, taps: list[TapRecord], price: DayPrice,
                held: dict[str, int], lang: str) -> str:
    """The day's taps explained, one sentence each in event order, with the local time
    and the route."""
    if not taps:
        return ("Tidak ada tap kartu ini pada hari layanan tersebut." if lang == "id" else
                "The card made no tap on that service day.")
    parts = []
    for row in taps:
        at = policy.local_time(row.ts).strftime("%H:%M")
        charge = price.charges.get(row.tap_id)
        sentence = explain_charge(row, charge, held.get(row.tap_id, 0), lang,
                                  boarding(policy, charge, taps))
        parts.append(f"{at} {row.route_id}: {sentence}")
    return " ".join(parts)
