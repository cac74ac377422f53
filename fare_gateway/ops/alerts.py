"""What needs an operator now (contract section 8), pure: the alerts decided from the
vehicles' last positions, the validators' states, the unanswered disputes and the clock.

Each alert names its `kind`, its `subject` (a vehicle, a device or a dispute), `since`
(epoch ms: when its condition began) and a sentence in English (`detail`) and in
Indonesian (`detail_id`), with the figures behind it in `data` for a page to show in
its own words. They are listed newest `since` first: what has just gone wrong is on top,
and what has waited longest at the bottom; the same instant goes by `KINDS`' order.

`bunching` is decided from the headways (tracking.headways): `bunching_alert` words a
bunched pair, which comes in through `others` and is ordered with the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fare_gateway.riders.disputes import DisputeRecord, due_at, escalate_at, status_at
from tracking.domain import OFFLINE_AFTER_S, SILENT_AFTER_S, STALE_AFTER_S, state
from transit.instants import iso_z

if TYPE_CHECKING:  # plain records; their modules' adapters are not needed to read them
    from tracking.headways import Bunch
    from tracking.services import ValidatorState
    from tracking.store import VehicleRecord

VEHICLE_STALE = "vehicle_stale"
VALIDATOR_SILENT = "validator_silent"
SPOOL_GROWING = "spool_growing"
BUNCHING = "bunching"
DISPUTE_ESCALATED = "dispute_escalated"
DISPUTE_OVERDUE = "dispute_overdue"
KINDS = (DISPUTE_OVERDUE, VALIDATOR_SILENT, SPOOL_GROWING, VEHICLE_STALE, BUNCHING,
         DISPUTE_ESCALATED)


@dataclass(frozen=True)
class Thresholds:
    """When a vehicle turns stale and offline, and a validator silent (seconds)."""

    stale_after_s: float = STALE_AFTER_S
    offline_after_s: float = OFFLINE_AFTER_S
    silent_after_s: float = SILENT_AFTER_S


@dataclass(frozen=True)
class OpsAlert:
    """One condition that needs an operator."""

    kind: str
    subject: str
    since: int
    detail: str  # English
    detail_id: str  # Indonesian
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The alert as the API shows it."""
        return {"kind": self.kind, "subject": self.subject, "since": self.since,
                "detail": self.detail, "detail_id": self.detail_id, "data": self.data}


def decide_alerts(now_ms: int, vehicles: Iterable[VehicleRecord],
                  validators: Iterable[ValidatorState], disputes: Iterable[DisputeRecord],
                  thresholds: Thresholds = Thresholds(), others: Iterable[OpsAlert] = ()
                  ) -> list[OpsAlert]:
    """Every alert as of `now_ms`, newest `since` first.

    `disputes` are those not answered by `now_ms` (any others are left out); `others`
    are alerts decided elsewhere (bunching).
    """
    found = [*(a for v in vehicles if (a := stale_vehicle(v, now_ms, thresholds))),
             *validator_alerts(validators, thresholds),
             *(a for d in disputes if (a := dispute_alert(d, now_ms))), *others]
    rank = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(found, key=lambda a: (-a.since, rank.get(a.kind, len(KINDS)), a.subject))


def stale_vehicle(vehicle: VehicleRecord, now_ms: int, thresholds: Thresholds
                  ) -> OpsAlert | None:
    """`vehicle_stale` while its last position is 90 s to 10 minutes old (after that it
    is offline: off service, or its validator is down, which has its own alert)."""
    age_s = max(0.0, (now_ms - vehicle.ts) / 1000)
    if state(age_s, thresholds.stale_after_s, thresholds.offline_after_s) != "stale":
        return None
    age = int(age_s)
    return OpsAlert(
        VEHICLE_STALE, vehicle.vehicle_id, vehicle.ts + round(thresholds.stale_after_s * 1000),
        f"Vehicle {vehicle.vehicle_id} (route {vehicle.route_id}) has sent no position for "
        f"{age} s; the last came from validator {vehicle.device_id}.",
        f"Kendaraan {vehicle.vehicle_id} (rute {vehicle.route_id}) tidak mengirim posisi "
        f"selama {age} detik; yang terakhir dari validator {vehicle.device_id}.",
        {"vehicle_id": vehicle.vehicle_id, "route_id": vehicle.route_id,
         "device_id": vehicle.device_id, "last_position_ts": vehicle.ts, "age_s": age})


def validator_alerts(validators: Iterable[ValidatorState], thresholds: Thresholds
                     ) -> list[OpsAlert]:
    """`validator_silent` for an active validator whose status says online but that has
    not been heard from for longer than the silent threshold; `spool_growing` for one,
    online or silent, whose spool keeps growing (an offline one cannot send its taps)."""
    out = []
    for v in validators:
        if v.registration != "active":
            continue
        if v.state == "silent" and v.last_seen_ms is not None:
            since = v.last_seen_ms + round(thresholds.silent_after_s * 1000)
            out.append(OpsAlert(
                VALIDATOR_SILENT, v.device_id, since,
                f"Validator {v.device_id} on vehicle {v.vehicle_id} says it is online, but "
                f"nothing has been heard from it since {iso_z(v.last_seen_ms)}.",
                f"Validator {v.device_id} di kendaraan {v.vehicle_id} menyatakan daring, "
                f"tetapi tidak terdengar apa pun sejak {iso_z(v.last_seen_ms)}.",
                {"device_id": v.device_id, "vehicle_id": v.vehicle_id,
                 "last_seen_ms": v.last_seen_ms}))
        if v.state != "offline" and v.spool_growing_since_ms is not None:
            out.append(OpsAlert(
                SPOOL_GROWING, v.device_id, v.spool_growing_since_ms,
                f"The spool of validator {v.device_id} on vehicle {v.vehicle_id} keeps "
                f"growing: {v.spool_depth} taps wait for their receipts.",
                f"Antrean validator {v.device_id} di kendaraan {v.vehicle_id} terus "
                f"bertambah: {v.spool_depth} tap menunggu tanda terima.",
                {"device_id": v.device_id, "vehicle_id": v.vehicle_id,
                 "spool_depth": v.spool_depth}))
    return out


def dispute_alert(dispute: DisputeRecord, now_ms: int) -> OpsAlert | None:
    """`dispute_overdue` from its due time (48 h unanswered), `dispute_escalated` from
    its escalation (24 h) until then; nothing for one answered or still open."""
    status = status_at(dispute.created_ms, dispute.answered_ms, now_ms)
    if status not in ("escalated", "overdue"):
        return None
    due = iso_z(due_at(dispute.created_ms))
    ident, what = dispute.dispute_id, f"({dispute.category}) on card {dispute.card}"
    apa = f"({dispute.category}) kartu {dispute.card}"
    data: dict[str, Any] = {"dispute_id": ident, "card": dispute.card,
                            "category": dispute.category, "tap_id": dispute.tap_id,
                            "created_at": iso_z(dispute.created_ms), "due_at": due}
    if status == "overdue":
        return OpsAlert(DISPUTE_OVERDUE, str(ident), due_at(dispute.created_ms),
                     f"Dispute {ident} {what} was due at {due}: answer it now.",
                     f"Sengketa {ident} {apa} melewati batas waktu {due}: segera jawab.",
                     data)
    return OpsAlert(DISPUTE_ESCALATED, str(ident), escalate_at(dispute.created_ms),
                 f"Dispute {ident} {what} has had no answer for 24 hours; it is due at "
                 f"{due}.",
                 f"Sengketa {ident} {apa} belum dijawab selama 24 jam; batas waktunya "
                 f"{due}.", data)


def bunching_alert(bunch: Bunch, since_ms: int) -> OpsAlert:
    """`bunching` for two vehicles of a route's direction closer than the bunched
    threshold of its headway, since they were first seen so."""
    direction = "-" if bunch.direction_id is None else str(bunch.direction_id)
    pair = f"{bunch.leader} & {bunch.follower}"
    gap_m, gap_s, headway_s = round(bunch.gap_m), round(bunch.gap_s), round(bunch.headway_s)
    pct = bunch.thresholds.bunched_pct
    source = {"frequency": "frequencies", "scheduled": "timetable",
              "observed": "observed"}.get(bunch.headway_source, bunch.headway_source)
    sumber = {"frequency": "frekuensi", "scheduled": "jadwal",
              "observed": "pengamatan"}.get(bunch.headway_source, bunch.headway_source)
    return OpsAlert(
        BUNCHING, f"{bunch.route_id}/{direction}: {pair}", since_ms,
        f"Route {bunch.route_id} (direction {direction}): {bunch.follower} runs {gap_m} m "
        f"({gap_s} s) behind {bunch.leader}, under {pct} % of the {headway_s} s headway "
        f"({source}).",
        f"Rute {bunch.route_id} (arah {direction}): {bunch.follower} berjalan {gap_m} m "
        f"({gap_s} detik) di belakang {bunch.leader}, di bawah {pct} % dari jarak antar "
        f"bus {headway_s} detik ({sumber}).",
        {"route_id": bunch.route_id, "direction_id": bunch.direction_id,
         "leader": bunch.leader, "follower": bunch.follower, "gap_m": gap_m,
         "gap_s": gap_s, "headway_s": headway_s, "headway_source": bunch.headway_source,
         "bunched_pct": pct})


def bunching_alerts(found: Iterable[tuple[Bunch, int]]) -> list[OpsAlert]:
    """The `bunching` alerts of the bunched pairs, each with when it was first seen."""
    return [bunching_alert(bunch, since) for bunch, since in found]


def kinds_of(alerts: Sequence[OpsAlert]) -> dict[str, int]:
    """How many alerts of each kind (every kind named, 0 where none)."""
    counts = dict.fromkeys(KINDS, 0)
    for a in alerts:
        counts[a.kind] = counts.get(a.kind, 0) + 1
    return counts
