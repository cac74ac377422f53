"""The demo's history: what finance learns to read, made the way it happens.

A fresh demo database gets a **closed business day** before today's: six riders on the
first three buses (R1, R2 and Trans Semanggi K1), top-ups at the kiosks in the morning,
fares in every category, a free transfer, a daily cap, and a **late tap**: bus 2 is out
of reach from 09:45 to 11:05, so Agus's 09:45 tap on R2 reaches the gateway after his
10:30 tap on R1 was charged in full; re-priced with it, the 10:30 tap is a transfer and
the gateway posts a correction. Every tap is signed by the bus's own validator key and
numbered by the bus's own spool (so the agent that starts afterwards goes on from the
next `seq`), and goes through the gateway's tap service with its clock, and the ledger's,
set to the moment the tap arrived: the entries are posted in that day, as they would
have been. The day is then settled, which records it in the chain.

Today, once the gateway runs, through its HTTP API with the demo's own tokens: Dewi
signs up, links her card with its check code and questions yesterday's K1 fare, and
finance (Sari Wulandari) refunds it; she reports the card lost and moves its balance to
a new card (a transfer); Sari asks for a credit to Putri's card that Budi Santoso
approves (an adjustment), and Budi asks for one that waits for a second holder, for
the README's walk-through to approve. Each step looks first at what is there, so a
restarted demo repeats none of them.

Built-in Surabaya fares (section 5 of the contract: regular 5000, student 2500,
student 1000 and regular 2000 from 05:00 to 07:00, senior 0; a transfer within 120
minutes pays the difference; a daily cap of 10000 regular and 5000 student), the day
by hand:

    Rizky  (student)  06:10 R1  1000  early fare
    Siti   (senior)   06:40 K1     0
    Dewi   (regular)  07:30 R1  5000
    Dewi              08:15 R2     0  transfer
    Putri  (student)  09:00 K1  2500
    Agus   (regular)  10:30 R1  5000  charged first ...
    Agus              09:45 R2  5000  ... received at 11:05: the 10:30 tap becomes a
                                      transfer, correction -5000 on R1
    Rizky             17:20 R2  2500
    Dewi              17:40 K1  5000  (her day: 10000, the cap; refunded today)
    Rizky             19:45 K1  1500  capped (2500 asked, 3500 paid already, cap 5000)
    top-ups: Dewi 50000, Rizky 20000, Siti 10000, Putri 15000, Agus 30000

so its settlement holds fares 27500, corrections -5000 and top-ups 125000, and its
float closes at 102500.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from transit.errors import TransitError

if TYPE_CHECKING:
    from fare_gateway.wiring import Core
    from ledger.settlement import Settlement

# The buses of the history, by number (the demo's bus n is SBY-BUS-0n, on R1, R2 and
# Trans Semanggi K1 for the first three): yesterday's riders rode on those three,
# whatever today's fleet.
BUSES = (1, 2, 3)
SEEDER = "demo"  # the system actor the demo's seeding is audited as (`Actor.system`)
K1 = "TS1"  # the route of Dewi's questioned ride


@dataclass(frozen=True)
class Rider:
    """A card of the history and who holds it."""

    card: str
    category: str
    holder: str


DEWI = Rider("04DF00000001", "regular", "Dewi Lestari")
DEWI_NEW = Rider("04DF00000002", "regular", "Dewi Lestari (her new card)")
RIZKY = Rider("04DF00000003", "student", "Rizky Pratama")
SITI = Rider("04DF00000004", "senior", "Siti Aminah")
AGUS = Rider("04DF00000005", "regular", "Agus Setiawan")
PUTRI = Rider("04DF00000006", "student", "Putri Maharani")
RIDERS = (DEWI, DEWI_NEW, RIZKY, SITI, AGUS, PUTRI)
# The cards whose check codes today's steps need (linking, replacing).
CODED = (DEWI.card, DEWI_NEW.card)


@dataclass(frozen=True)
class Topup:
    """Money paid in at a kiosk, credited at `at` (local time of the day)."""

    card: str
    amount: int
    at: time
    kiosk: str


@dataclass(frozen=True)
class Ride:
    """A tap on bus `bus` at `stop`, made at `tapped` and received at `received` (the
    bus's next contact; None: three seconds later, the usual round trip)."""

    bus: int
    card: str
    tapped: time
    stop: str
    received: time | None = None


DAY: tuple[Topup | Ride, ...] = (
    Topup(DEWI.card, 50_000, time(5, 2), "PRB"),
    Topup(RIZKY.card, 20_000, time(5, 40), "PRB"),
    Topup(SITI.card, 10_000, time(6, 5), "LDW"),
    Ride(1, RIZKY.card, time(6, 10), "Bundaran Waru"),
    Ride(3, SITI.card, time(6, 40), "Unesa Lidah Wetan"),
    Ride(1, DEWI.card, time(7, 30), "Ahmad Yani - Royal Plaza"),
    Ride(2, DEWI.card, time(8, 15), "Terminal Intermoda Joyoboyo"),
    Topup(PUTRI.card, 15_000, time(8, 30), "LDW"),
    Ride(3, PUTRI.card, time(9, 0), "HR Muhammad"),
    Topup(AGUS.card, 30_000, time(9, 20), "JYB"),
    # Bus 2 loses the network after this tap and sends it when it is back, at 11:05.
    Ride(2, AGUS.card, time(9, 45), "Kertajaya", received=time(11, 5)),
    Ride(1, AGUS.card, time(10, 30), "Raya Darmo - Taman Bungkul"),
    Ride(2, RIZKY.card, time(17, 20), "Kampus ITS"),
    Ride(3, DEWI.card, time(17, 40), "Mayjen Sungkono - Ciputra World"),
    Ride(3, RIZKY.card, time(19, 45), "Adityawarman"),
)
ROUND_TRIP = timedelta(seconds=3)


@dataclass(frozen=True)
class Step:
    """One event of the day, at the moment it reaches the back office (`posted_ms`);
    `ts` is when it happened (a tap's time), both epoch ms."""

    posted_ms: int
    ts: int
    event: Topup | Ride


def local_ms(day: date, at: time, timezone: str) -> int:
    """Epoch ms of local wall time `at` on calendar date `day`."""
    return int(datetime.combine(day, at, ZoneInfo(timezone)).timestamp() * 1000)


def timeline(day: date, timezone: str) -> list[Step]:
    """The day's events in the order the back office receives them (every time is
    after the business day's 03:00 start and before midnight, so the calendar date is
    the business date)."""
    steps = []
    for event in DAY:
        if isinstance(event, Topup):
            at = local_ms(day, event.at, timezone)
            steps.append(Step(at, at, event))
        else:
            ts = local_ms(day, event.tapped, timezone)
            posted = (local_ms(day, event.received, timezone) if event.received
                      else ts + int(ROUND_TRIP.total_seconds() * 1000))
            steps.append(Step(posted, ts, event))
    return sorted(steps, key=lambda s: (s.posted_ms, s.ts))


def stop_position(route_id: str, stop: str) -> tuple[int, int]:
    """A named stop of a demo corridor, as (lat_e6, lon_e6)."""
    from hardware_sim.surabaya import CORRIDORS

    for corridor in CORRIDORS:
        if corridor[0] == route_id:
            for name, lat, lon in corridor[5]:
                if name == stop:
                    return round(lat * 1e6), round(lon * 1e6)
    raise ValueError(f"no stop {stop!r} on {route_id}")


class HistoryError(TransitError):
    """The demo's history could not be made as written."""


# -- yesterday, in-process -------------------------------------------------------------

@dataclass(frozen=True)
class Validator:
    """A bus's validator as the history needs it: who signs, and the spool that numbers."""

    number: int
    device_id: str
    vehicle_id: str
    route_id: str
    secret: bytes
    spool: Path


class _Clock:
    """A settable clock (epoch ms): the moment the history is at."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def seed_closed_day(core: Core, validators: Mapping[int, Validator], day: date) -> None:
    """Issue the history's cards and replay `day` through the ledger and the tap path.

    Runs before any validator agent starts: each bus's spool numbers its taps, and the
    agent goes on after them.
    """
    from fare_gateway.cards import issue_card, topup_card
    from fare_gateway.devices import DeviceDirectory
    from fare_gateway.routes import RouteDirectory
    from fare_gateway.taps import Inbound, TapService
    from fare_gateway.taps.sql import sql_units
    from ledger.audit import Actor
    from ledger.services import Ledger
    from transit.topics import Topics
    from transit.wire import Tap
    from validator_agent.spool import Spool

    policy = core.policy
    missing = {r.category for r in RIDERS} - set(policy.categories)
    if missing:
        raise HistoryError(f"the fare policy has no {', '.join(sorted(missing))} category: "
                           "the demo's history is made for the built-in Surabaya fares")
    clock = _Clock()
    # The demo's ledger, its fingerprints with it, but posting at the history's time.
    ledger = Ledger(core.engine, policy.currency, clock=clock,
                    fingerprints=core.ledger.fingerprints)
    topics = Topics(core.settings.topic_prefix)
    service = TapService(sql_units(core.sessions, ledger, policy), policy,
                         DeviceDirectory(core.sessions, key=core.settings.secret_key),
                         RouteDirectory(core.sessions), topics, core.metrics, clock=clock)
    seeder = Actor.system(SEEDER)
    with core.sessions.begin() as s:
        for rider in RIDERS:
            issue_card(s, ledger, policy, rider.card, rider.category, actor=seeder)
    spools = {n: Spool(v.spool) for n, v in validators.items()}
    try:
        for step in timeline(day, policy.timezone):
            clock.now = step.posted_ms
            event = step.event
            if isinstance(event, Topup):
                reference = f"kiosk-{event.kiosk}-{day.isoformat()}-{event.card[-2:]}"
                with core.sessions.begin() as s:
                    topup_card(s, ledger, policy, event.card, event.amount, reference,
                               actor=seeder)
                continue
            bus = validators[event.bus]
            route = bus.route_id
            lat, lon = stop_position(route, event.stop)

            def make(seq: int, bus: Validator = bus, route: str = route, ts: int = step.ts,
                     card: str = event.card, lat: int = lat, lon: int = lon) -> Tap:
                return Tap(device_id=bus.device_id, seq=seq, vehicle_id=bus.vehicle_id,
                           route_id=route, card=card, kind="entry", accepted=True, ts=ts,
                           lat_e6=lat, lon_e6=lon).signed(bus.secret)

            tap = spools[event.bus].append(make)
            outcome, = service.handle([Inbound(topics.tap(bus.device_id), tap.encode(),
                                               received_ms=step.posted_ms)])
            if outcome.status != "charged":
                raise HistoryError(f"the demo's history: tap {tap.tap_id} came back "
                                   f"{outcome.status} ({outcome.reason or 'no reason'}), "
                                   "not charged")
            spools[event.bus].receipted(tap.seq)
    finally:
        for spool in spools.values():
            spool.close()


def settle_closed_day(core: Core, day: date) -> Settlement:
    """Settle `day` as `transit settle` does: once closed, it is recorded in the chain
    (with every closed day before it)."""
    from ledger.audit import Actor
    from ledger.settlement import BusinessCalendar, Settler, settle_day

    policy = core.policy
    settler = Settler(BusinessCalendar(policy.timezone, policy.service_day_start_min),
                      policy.currency, fingerprints=core.ledger.fingerprints)
    # Recorded in the audit trail as `transit settle` records it: by whoever runs it here.
    return settle_day(core.sessions, settler, day, actor=Actor.command())


def closed_day(core: Core, now_ms: int) -> date:
    """The business day before the one `now_ms` falls in."""
    from ledger.settlement import BusinessCalendar

    calendar = BusinessCalendar(core.policy.timezone, core.policy.service_day_start_min)
    return calendar.day_of(now_ms) - timedelta(days=1)


# -- today, over HTTP ------------------------------------------------------------------

RIDER_EMAIL = "dewi.lestari@contoh.id"
RIDER_PASSWORD = "kartu-hilang-2026"
SARI = "Sari Wulandari"
BUDI = "Budi Santoso"
DISPUTE_MESSAGE = ("Bus K1 berbalik arah di HR Muhammad karena banjir dan semua penumpang "
                   "diturunkan; saya membayar Rp 5.000 untuk perjalanan yang tidak terjadi.")
REFUND_MESSAGE = ("Bus K1 SBY-BUS-03 memang berbalik arah sore itu karena banjir: tarifnya "
                  "kami kembalikan.")


@dataclass(frozen=True)
class AdjustmentAsk:
    """An adjustment one holder asks for; `approver` decides it (None: left pending)."""

    card: str
    amount: int
    reason: str
    reference: str
    asker: str
    approver: str | None


ADJUSTMENTS = (
    AdjustmentAsk(PUTRI.card, 20_000, "Cash top-up of Rp 20.000 at the Joyoboyo kiosk "
                  "paid but never credited (kiosk receipt JYB-0419)",
                  "demo-adjustment-JYB-0419", SARI, BUDI),
    AdjustmentAsk(AGUS.card, 5_000, "Goodwill credit: R1 bus broke down at Wonokromo "
                  "and the riders walked on (complaint by phone, ticket 0417)",
                  "demo-adjustment-goodwill-0417", BUDI, None),
)


class Api:
    """The gateway's HTTP API, as a client sees it: JSON in and out."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: object = None, token: str | None = None
             ) -> tuple[int, Any]:
        """The status and the decoded JSON body of one request."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=data, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw or b"null")
            except ValueError:
                return exc.code, None

    def ok(self, method: str, path: str, body: object = None, token: str | None = None,
           accept: tuple[int, ...] = (200, 201)) -> Any:
        """The JSON body of a request that must answer one of `accept`."""
        status, answer = self.call(method, path, body, token)
        if status not in accept:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            raise HistoryError(f"{method} {path} answered {status}"
                               f"{': ' + str(error.get('message')) if error else ''}")
        return answer


def play_today(api: Api, finance: Mapping[str, str], codes: Mapping[str, str],
               closed_day: date) -> list[str]:
    """Today's part of the history through the API (each step only if not done yet);
    what it did, one line per step done now."""
    done: list[str] = []
    step: Callable[[str], None] = done.append
    credentials = {"email": RIDER_EMAIL, "password": RIDER_PASSWORD}
    # Logging in first: sign-ups are counted per address, and a demo restarted often
    # would otherwise meet that limit with an account it has.
    status, session = api.call("POST", "/api/v1/rider/login", credentials)
    if status == 401:
        api.ok("POST", "/api/v1/rider/accounts", credentials, accept=(201,))
        step(f"rider {RIDER_EMAIL} signed up")
        session = api.ok("POST", "/api/v1/rider/login", credentials)
    elif status != 200:
        raise HistoryError(f"POST /api/v1/rider/login answered {status}")
    rider = session["token"]
    cards = {c["card"]: c for c in api.ok("GET", "/api/v1/rider/cards", token=rider)["cards"]}
    if DEWI.card not in cards:
        api.ok("POST", "/api/v1/rider/cards",
               {"card": DEWI.card, "check_code": codes[DEWI.card]}, rider)
        step(f"linked card {DEWI.card}")
    _refund(api, rider, finance[SARI], closed_day, step)
    cards = {c["card"]: c for c in api.ok("GET", "/api/v1/rider/cards", token=rider)["cards"]}
    if not cards[DEWI.card].get("replaced_by"):
        api.ok("POST", f"/api/v1/rider/cards/{DEWI.card}/lost", {}, rider)
        moved = api.ok("POST", f"/api/v1/rider/cards/{DEWI.card}/replace",
                       {"new_card": DEWI_NEW.card, "check_code": codes[DEWI_NEW.card]},
                       rider)["moved"]
        step(f"card {DEWI.card} lost, Rp {moved:,} moved to {DEWI_NEW.card}")
    for ask in ADJUSTMENTS:
        adjustment = api.ok("POST", "/api/v1/adjustments",
                            {"card": ask.card, "amount": ask.amount, "reason": ask.reason,
                             "reference": ask.reference}, finance[ask.asker])
        if ask.approver is not None and adjustment["status"] == "pending":
            api.ok("POST", f"/api/v1/adjustments/{adjustment['adjustment_id']}/approve",
                   {}, finance[ask.approver])
            step(f"adjustment {ask.reference} approved")
    return done


def _refund(api: Api, rider: str, finance: str, closed_day: date,
            step: Callable[[str], None]) -> None:
    """Dewi questions her K1 fare of the closed day; finance refunds it."""
    disputes = [d for d in api.ok("GET", "/api/v1/rider/disputes", token=rider)["disputes"]
                if d["card"] == DEWI.card]
    if not disputes:
        day = closed_day.isoformat()
        query = urllib.parse.urlencode({"from": day, "to": day})
        items = api.ok("GET", f"/api/v1/rider/cards/{DEWI.card}/statement?{query}",
                       token=rider)["items"]
        fares = [i for i in items if i["type"] == "tap" and i["route_id"] == K1
                 and i["amount"] < 0]
        if not fares:
            raise HistoryError(f"card {DEWI.card} has no charged K1 ride on {day} to question")
        disputes = [api.ok("POST", "/api/v1/rider/disputes",
                           {"card": DEWI.card, "tap_id": fares[0]["tap_id"],
                            "category": "wrong_fare", "message": DISPUTE_MESSAGE}, rider)]
        step(f"dispute {disputes[0]['dispute_id']} opened on {fares[0]['tap_id']}")
    dispute = disputes[0]  # newest first: the one open, if any
    if dispute.get("answered_at"):
        return
    taps = api.ok("GET", f"/api/v1/cards/{DEWI.card}/taps", token=finance)["taps"]
    charged = sum(t["fare"] for t in taps if t["tap_id"] == dispute["tap_id"])
    if charged <= 0:
        raise HistoryError(f"tap {dispute['tap_id']} of card {DEWI.card} costs nothing now: "
                           "nothing to refund")
    api.ok("POST", f"/api/v1/disputes/{dispute['dispute_id']}/answer",
           {"decision": "refund", "amount": charged, "message": REFUND_MESSAGE}, finance)
    step(f"dispute {dispute['dispute_id']} refunded Rp {charged:,}")
