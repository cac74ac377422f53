"""Service alerts (contract section 8): what operations tell riders about the network (a
detour, a closed stop, a strike) and for how long.

The rules are pure: `parse_alert` turns a request into an `AlertDraft` or says, by a
stable code, what is wrong with it, and `Alert.state` judges an alert as of any instant,
so that nothing has to run when an alert starts or runs out. `AlertOffice` keeps the
alerts in `service_alerts` (never deleted: what riders were told stays on record),
records every change in the audit trail in the same transaction, and answers the
GTFS-Realtime feed and the riders.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from google.transit import gtfs_realtime_pb2
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from ledger import audit
from ledger.adapters.db import READS_ONLY, Sessions
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from ledger.services import retry_once_on_race
from tracking.adapters.models import Agency, Route, ServiceAlert, Stop, Trip, TripStop
from tracking.realtime import FeedAlert, alert_feed
from transit.instants import AS_OF, LATEST_MS, parse_instant

Texts = tuple[tuple[str, str], ...]  # (language, text) pairs, Indonesian first

CAUSES = tuple(gtfs_realtime_pb2.Alert.Cause.keys())
EFFECTS = tuple(gtfs_realtime_pb2.Alert.Effect.keys())
DEFAULT_CAUSE, DEFAULT_EFFECT = "UNKNOWN_CAUSE", "UNKNOWN_EFFECT"
STATES = ("active", "upcoming", "ended", "expired")
FIELDS = ("header", "description", "cause", "effect", "route_ids", "stop_ids", "start",
          "end", "reference")
LANGUAGE = "id"  # the network's language: every alert has a text in it
MAX_HEADER = 200
MAX_DESCRIPTION = 2000
MAX_LANGUAGES = 4
MAX_IDS = 500  # routes or stops one alert names
MAX_ID = 100  # the longest stop id the network keeps
MAX_NAMED = 10  # unknown ids an error message lists
# An instant before 2001-09-09 in milliseconds is an instant in seconds by mistake.
EARLIEST_MS = 1_000_000_000_000
LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}")
REFERENCE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
ALERT_ID = re.compile(r"[0-9a-f]{32}")


class AlertError(ValueError):
    """A request for an alert that is refused; `code` says why (a 422)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AlertConflict(AlertError):
    """The alert's reference came before with another alert (a 409)."""


class AlertNotFound(LookupError):
    """No alert of that id (a 404)."""


@dataclass(frozen=True)
class AlertDraft:
    """A request for an alert that passed every rule but the network's (its ids exist)."""

    header: Texts
    description: Texts
    cause: str
    effect: str
    route_ids: tuple[str, ...]
    stop_ids: tuple[str, ...]
    start_ms: int | None  # None: from the moment it is made
    end_ms: int | None  # None: until it is ended
    reference: str | None

    def alert_id(self) -> str:
        """Derived from the reference, so that its primary key makes a retried request
        find the first alert instead of making a second; random without one."""
        if self.reference is None:
            return uuid.uuid4().hex
        return hashlib.sha256(f"alert-reference:{self.reference}".encode()).hexdigest()[:32]

    def same_as(self, alert: Alert) -> bool:
        """Whether `alert` is what this request asks for (a start left out matches any)."""
        return ((self.header, self.description, self.cause, self.effect, self.route_ids,
                 self.stop_ids, self.end_ms)
                == (alert.header, alert.description, alert.cause, alert.effect,
                    alert.route_ids, alert.stop_ids, alert.end_ms)
                and self.start_ms in (None, alert.start_ms))


@dataclass(frozen=True)
class Alert:
    """A service alert as kept: times in epoch milliseconds."""

    alert_id: str
    header: Texts
    description: Texts
    cause: str
    effect: str
    route_ids: tuple[str, ...]
    stop_ids: tuple[str, ...]
    start_ms: int
    end_ms: int | None
    created_ms: int
    created_by: str
    ended_ms: int | None = None
    ended_by: str | None = None

    @property
    def network_wide(self) -> bool:
        """An alert naming no route and no stop is about the whole network."""
        return not self.route_ids and not self.stop_ids

    def state(self, now_ms: int) -> str:
        """`ended` (by operations), `expired` (its end passed), `upcoming` or `active`."""
        if self.ended_ms is not None and self.ended_ms <= now_ms:
            return "ended"
        if self.end_ms is not None and self.end_ms <= now_ms:
            return "expired"
        return "upcoming" if self.start_ms > now_ms else "active"


def in_language(texts: Texts, language: str) -> tuple[str, str]:
    """The text in `language`, else the Indonesian one: (its language, the text)."""
    found = dict(texts)
    for wanted in (language, LANGUAGE):
        if wanted in found:
            return wanted, found[wanted]
    return texts[0]


# -- the rules --------------------------------------------------------------------------------

def parse_alert(body: Mapping[str, object], now_ms: int) -> AlertDraft:
    """The alert a request body asks for, judged at `now_ms`; AlertError naming the
    first rule it breaks."""
    extra = sorted(set(body) - set(FIELDS))
    if extra:
        raise AlertError("unknown_field", f"unknown field {extra[0][:40]!r}; an alert has "
                                          f"{', '.join(FIELDS)}")
    start = _instant(body.get("start"), "start")
    end = _instant(body.get("end"), "end")
    if end is not None and end <= (now_ms if start is None else start):
        raise AlertError("bad_period", "end must be after start (or after now, when no "
                                       "start is given)")
    if end is not None and end <= now_ms:
        raise AlertError("end_passed", "end is in the past: the alert would never be shown")
    return AlertDraft(
        header=_texts(body.get("header"), "header", MAX_HEADER, CONTROL),
        description=_texts(body.get("description"), "description", MAX_DESCRIPTION,
                           CONTROL_BUT_NEWLINE),
        cause=_enum(body.get("cause"), "cause", CAUSES, DEFAULT_CAUSE),
        effect=_enum(body.get("effect"), "effect", EFFECTS, DEFAULT_EFFECT),
        route_ids=_ids(body.get("route_ids"), "route_ids"),
        stop_ids=_ids(body.get("stop_ids"), "stop_ids"),
        start_ms=start, end_ms=end, reference=_reference(body.get("reference")))


def _texts(value: object, name: str, longest: int, forbidden: re.Pattern[str]) -> Texts:
    """A text, or an object of language -> text: as (language, text) pairs, Indonesian
    first, then English, then the others as given."""
    if isinstance(value, str):
        value = {LANGUAGE: value}
    if not isinstance(value, dict) or not value:
        raise AlertError(f"bad_{name}", f"{name} must be a text, or an object of language "
                                        f"-> text such as {{\"id\": \"...\", \"en\": \"...\"}}")
    if len(value) > MAX_LANGUAGES:
        raise AlertError(f"bad_{name}", f"{name} has more than {MAX_LANGUAGES} languages")
    texts: dict[str, str] = {}
    for tag, text in value.items():
        primary, dash, rest = (tag.strip() if isinstance(tag, str) else "").partition("-")
        language = primary.lower() + dash + rest  # BCP 47 tags are case-blind
        if not LANGUAGE_TAG.fullmatch(language) or language in texts:
            raise AlertError(f"bad_{name}", f"{name}: {str(tag)[:20]!r} is not a language "
                                            "tag (BCP 47, such as id or en), or is repeated")
        if not isinstance(text, str):
            raise AlertError(f"bad_{name}", f"{name} in {language} must be a text")
        text = text.replace("\r\n", "\n").strip()
        if not text or len(text) > longest or forbidden.search(text):
            raise AlertError(f"bad_{name}", f"{name} in {language} must be 1 to {longest} "
                                            "characters" + (", on one line" if forbidden is
                                                            CONTROL else ""))
        texts[language] = text
    if LANGUAGE not in texts:
        raise AlertError(f"bad_{name}", f"{name} needs an Indonesian text ({LANGUAGE!r}); "
                                        "a plain text is taken as Indonesian")
    order = [LANGUAGE, "en"] + [t for t in texts if t not in (LANGUAGE, "en")]
    return tuple((t, texts[t]) for t in order if t in texts)


def _enum(value: object, name: str, names: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or value.strip().upper() not in names:
        raise AlertError(f"bad_{name}", f"{name} must be one of {', '.join(names)}")
    return value.strip().upper()


def _ids(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if (not isinstance(value, list) or len(value) > MAX_IDS
            or not all(isinstance(v, str) and v.strip() and len(v) <= MAX_ID
                       and not CONTROL.search(v) for v in value)):
        raise AlertError(f"bad_{name}", f"{name} must be a list of at most {MAX_IDS} ids, "
                                        f"each 1 to {MAX_ID} characters")
    return tuple(dict.fromkeys(v.strip() for v in value))


def _instant(value: object, name: str) -> int | None:
    if value is None:
        return None
    ms: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        ms = value
    elif isinstance(value, str) and AS_OF.fullmatch(value):
        ms = parse_instant(value)
    if ms is None or not EARLIEST_MS <= ms <= LATEST_MS:
        raise AlertError(f"bad_{name}", f"{name} must be epoch milliseconds or an ISO-8601 "
                                        "instant with Z or an offset "
                                        "(2026-12-01T08:15:00+07:00)")
    return ms


def _reference(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not REFERENCE.fullmatch(value):
        raise AlertError("bad_reference", "reference must be 1 to 64 characters of "
                                          "A-Z a-z 0-9 . _ : -")
    return value


def unknown(wanted: Iterable[str], known: Iterable[str]) -> list[str]:
    """What of `wanted` is not `known`, in the order asked."""
    have = set(known)
    return [w for w in wanted if w not in have]


# -- the office ---------------------------------------------------------------------------

def _now_ms() -> int:
    return int(time.time() * 1000)


def _holder(actor: Actor) -> str:
    return (actor.name or f"{actor.kind}:{actor.id}")[:100]


class AlertOffice:
    """The alerts on record: make, list, end; the feed of those active now."""

    def __init__(self, sessions: Sessions, fingerprints: Fingerprints | None = None,
                 clock: Callable[[], int] = _now_ms) -> None:
        self.sessions = sessions
        self.fingerprints = fingerprints  # the audit trail's key: needed to change alerts
        self.clock = clock

    def create(self, body: Mapping[str, object], actor: Actor) -> tuple[Alert, bool]:
        """Make the alert `body` asks for: (it, True); (the first, False) for a reference
        seen before with the same alert. AlertError, AlertConflict otherwise."""
        now = self.clock()
        draft = parse_alert(body, now)
        alert_id = draft.alert_id()

        def attempt() -> tuple[Alert, bool]:
            with self.sessions.begin() as session:
                row = session.get(ServiceAlert, alert_id)
                if row is not None:
                    first = _alert(row)
                    if not draft.same_as(first):
                        raise AlertConflict("reference_conflict", "this reference was "
                                            "given before with another alert")
                    return first, False
                _check_network(session, draft)
                alert = Alert(alert_id, draft.header, draft.description, draft.cause,
                              draft.effect, draft.route_ids, draft.stop_ids,
                              now if draft.start_ms is None else draft.start_ms,
                              draft.end_ms, now, _holder(actor))
                session.add(_row(alert))
                session.flush()
                # What riders are told, word for word: the trail must be able to say it.
                audit.record(session, self._key(), actor, "alert.created", alert_id, {
                    "header": dict(alert.header), "description": dict(alert.description),
                    "cause": alert.cause, "effect": alert.effect,
                    "route_ids": list(alert.route_ids), "stop_ids": list(alert.stop_ids),
                    "start_ms": alert.start_ms, "end_ms": alert.end_ms,
                    "reference": draft.reference}, at_ms=now)
                return alert, True

        # Made by another request with the same reference at this very moment: the
        # second run finds it.
        return retry_once_on_race(attempt)

    def end(self, alert_id: str, actor: Actor) -> Alert:
        """End an alert now; one ended or run out already stays as it is."""
        if not ALERT_ID.fullmatch(alert_id):
            raise AlertNotFound(alert_id)
        now = self.clock()
        with self.sessions.begin() as session:
            row = session.get(ServiceAlert, alert_id, with_for_update=True)
            if row is None:
                raise AlertNotFound(alert_id)
            was = _alert(row).state(now)
            if was in ("ended", "expired"):
                return _alert(row)
            row.ended_ms, row.ended_by = now, _holder(actor)
            audit.record(session, self._key(), actor, "alert.ended", alert_id,
                         {"was": was}, at_ms=now)
            return _alert(row)

    def listed(self, everything: bool = False, limit: int = 200) -> list[Alert]:
        """The alerts active or upcoming, soonest first; with `everything`, the `limit`
        newest of all, ended and expired too."""
        now = self.clock()
        with self._reading() as session:
            query = select(ServiceAlert)
            if everything:
                query = query.order_by(ServiceAlert.created_ms.desc()).limit(limit)
            else:
                query = query.where(_current(now)).order_by(ServiceAlert.start_ms,
                                                             ServiceAlert.created_ms)
            return [_alert(r) for r in session.scalars(query)]

    def active(self, now_ms: int | None = None) -> list[Alert]:
        """The alerts active at `now_ms` (default now), soonest started first."""
        now = self.clock() if now_ms is None else now_ms
        with self._reading() as session:
            return _active(session, now)

    def feed(self, now_ms: int | None = None) -> gtfs_realtime_pb2.FeedMessage:
        """The GTFS-Realtime Alerts feed of the alerts active now.

        Each informs the routes and stops it names that the network still has (an alert
        outlives a re-import of the network); one about the whole network informs its
        agencies.
        """
        now = self.clock() if now_ms is None else now_ms
        with self._reading() as session:
            alerts = _active(session, now)
            routes = _existing(session, Route.route_id, {r for a in alerts
                                                         for r in a.route_ids})
            stops = _existing(session, Stop.stop_id, {s for a in alerts for s in a.stop_ids})
            agencies = _agencies(session) if any(a.network_wide for a in alerts) else []
        return alert_feed([FeedAlert(
            a.alert_id, a.header, a.description, a.cause, a.effect, a.start_ms, a.end_ms,
            tuple(("agency_id", g) for g in agencies) if a.network_wide else
            tuple(("route_id", r) for r in a.route_ids if r in routes)
            + tuple(("stop_id", s) for s in a.stop_ids if s in stops))
            for a in alerts], now)

    def on_routes(self, route_ids: Iterable[str], now_ms: int | None = None) -> list[Alert]:
        """The alerts active now about the network, one of `route_ids`, or a stop one
        of them serves."""
        now = self.clock() if now_ms is None else now_ms
        routes = set(route_ids)
        with self._reading() as session:
            alerts = _active(session, now)
            named_stops = {s for a in alerts for s in a.stop_ids}
            served = set() if not routes or not named_stops else set(session.scalars(
                select(TripStop.stop_id).distinct()
                .join(Trip, Trip.trip_id == TripStop.trip_id)
                .where(Trip.route_id.in_(routes), TripStop.stop_id.in_(named_stops))))
        return [a for a in alerts
                if a.network_wide or routes & set(a.route_ids) or served & set(a.stop_ids)]

    def _key(self) -> Fingerprints:
        if self.fingerprints is None:
            raise RuntimeError("this office reads alerts only: it has no audit key")
        return self.fingerprints

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)  # SQLite: no write lock
            yield session


def _current(now: int) -> ColumnElement[bool]:
    """Neither ended nor run out at `now`."""
    return and_(ServiceAlert.ended_ms.is_(None),
                or_(ServiceAlert.end_ms.is_(None), ServiceAlert.end_ms > now))


def _active(session: Session, now: int) -> list[Alert]:
    return [_alert(r) for r in session.scalars(
        select(ServiceAlert).where(_current(now), ServiceAlert.start_ms <= now)
        .order_by(ServiceAlert.start_ms, ServiceAlert.created_ms))]


def _existing(session: Session, column: InstrumentedAttribute[str], ids: set[str]
              ) -> set[str]:
    if not ids:
        return set()
    return set(session.scalars(select(column).where(column.in_(ids))))


def _agencies(session: Session) -> list[str]:
    """The agencies of the network's agency.txt. Those the import added for routes that
    name an agency agency.txt lacks carry no timezone; a feed consumer cannot resolve
    them (the validator's E034), so they are informed only when nothing else is there."""
    rows = session.execute(select(Agency.agency_id, Agency.timezone)
                           .order_by(Agency.agency_id)).all()
    listed = [a for a, tz in rows if tz]
    return listed or [a for a, _tz in rows]


def _check_network(session: Session, draft: AlertDraft) -> None:
    """Every route and stop the draft names is in the imported network, and there is a
    network to be about."""
    for name, column, ids in (("routes", Route.route_id, draft.route_ids),
                              ("stops", Stop.stop_id, draft.stop_ids)):
        missing = unknown(ids, _existing(session, column, set(ids)))
        if missing:
            shown = ", ".join(missing[:MAX_NAMED]) + (" ..." if len(missing) > MAX_NAMED
                                                      else "")
            raise AlertError(f"unknown_{name}", f"no {name} {shown} in the imported "
                                                "network (transit gtfs import)")
    if not draft.route_ids and not draft.stop_ids and not _agencies(session):
        raise AlertError("no_network", "an alert about the whole network needs one: "
                                       "import it first (transit gtfs import)")


def _row(a: Alert) -> ServiceAlert:
    return ServiceAlert(alert_id=a.alert_id, header=_dumps(dict(a.header)),
                        description=_dumps(dict(a.description)), cause=a.cause,
                        effect=a.effect, route_ids=_dumps(list(a.route_ids)),
                        stop_ids=_dumps(list(a.stop_ids)), start_ms=a.start_ms,
                        end_ms=a.end_ms, created_ms=a.created_ms, created_by=a.created_by,
                        ended_ms=a.ended_ms, ended_by=a.ended_by)


def _alert(r: ServiceAlert) -> Alert:
    return Alert(r.alert_id, _texts_of(r.header), _texts_of(r.description), r.cause,
                 r.effect, tuple(json.loads(r.route_ids)), tuple(json.loads(r.stop_ids)),
                 r.created_ms if r.start_ms is None else r.start_ms, r.end_ms, r.created_ms,
                 r.created_by, r.ended_ms, r.ended_by)


def _dumps(value: object) -> str:
    # Key order kept: the texts are stored Indonesian first, as they are shown.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _texts_of(stored: str) -> Texts:
    return tuple((str(k), str(v)) for k, v in json.loads(stored).items())

