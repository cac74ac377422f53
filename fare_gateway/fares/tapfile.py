"""A CSV file of taps, read into the fare engine's taps for pricing offline
(`transit fares price`): an operator's what-if list of rides, checked line by line.

The header names the columns, in any order: `card,ts,kind,vehicle_id,route_id,lat,lon`
are required, `device_id`, `seq`, `tap_id` and `category` optional. Unknown columns are
refused, as unknown keys of a policy are: a misspelt `category` must not quietly price
every card as the default category. Every bad line is reported (with its line number,
and all that is wrong with it) and then nothing is priced.

The file is bounded: past `MAX_TAPFILE_BYTES` or `MAX_TAPFILE_LINES` it is refused
before it is parsed, and no more than that is ever read. 300,000 taps of 5,000 cards
were read here in about 4 s and priced in about 9 s, so a file at the limit is priced
in under a minute.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fare_gateway.fares.engine import PricedTap
from fare_gateway.fares.policy import FarePolicy
from transit.topics import ID_PATTERN

MAX_TAPFILE_BYTES = 50 * 1024 * 1024
MAX_TAPFILE_LINES = 1_000_000
MAX_REPORTED = 20  # bad lines listed one by one; past that only counted
REQUIRED = ("card", "ts", "kind", "vehicle_id", "route_id", "lat", "lon")
OPTIONAL = ("device_id", "seq", "tap_id", "category")
DEFAULT_DEVICE = "CSV"
DIGITS = re.compile(r"[0-9]+")
TAP_ID = re.compile(r"[A-Za-z0-9._:-]{1,130}")
ISO_TS = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                    r"(?P<offset>Z|[+-]\d{2}:?\d{2})?")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
# Taps from before 2000 or after 2099 are a slip (epoch seconds given for milliseconds,
# a mistyped year), not a ride to price.
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00Z
LATEST_MS = 4_102_444_800_000  # 2100-01-01T00:00Z
TS_FORMS = ('ISO-8601 with an offset ("2025-11-24T08:00:00+07:00"), local time '
            '"YYYY-MM-DD HH:MM[:SS]" or epoch milliseconds')


class TapFileError(ValueError):
    """A taps file that cannot be priced: the message says why; `problems` lists the
    first bad lines (`MAX_REPORTED` of them), `bad_lines` counts them all."""

    def __init__(self, message: str, problems: list[str] | None = None,
                 bad_lines: int = 0) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.bad_lines = bad_lines


@dataclass(frozen=True)
class CsvTap:
    """One line of the file: the engine's tap and the card that made it."""

    line: int
    card: str
    tap: PricedTap


@dataclass
class TapFile:
    """The taps of a file, in file order, and each card's category."""

    taps: list[CsvTap] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)


def read_taps(path: str | Path, policy: FarePolicy) -> TapFile:
    """Read and check a taps file; raises TapFileError (never a bare traceback)."""
    source = str(path)
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_TAPFILE_BYTES + 1)
    except OSError as exc:
        raise TapFileError(f"{source}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_TAPFILE_BYTES:
        raise TapFileError(f"{source}: larger than {MAX_TAPFILE_BYTES:,} bytes, the limit for "
                           "a taps file: split it")
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's export may start with a BOM
    except UnicodeDecodeError as exc:
        raise TapFileError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    return parse_taps(text, policy, source)


def parse_taps(text: str, policy: FarePolicy, source: str = "taps") -> TapFile:
    """Check the text of a taps file line by line and turn it into engine taps."""
    # Every line ending csv reads (\n, \r\n and a lone \r) counts toward the limit.
    lines = (text.count("\n") + text.count("\r") - text.count("\r\n")
             + (0 if text.endswith(("\n", "\r")) or not text else 1))
    if lines > MAX_TAPFILE_LINES:
        raise TapFileError(f"{source}: more than {MAX_TAPFILE_LINES:,} lines, the limit for "
                           "a taps file: split it")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise TapFileError(f"{source}: empty: a header line "
                           f"({','.join(REQUIRED)}) is wanted") from None
    except csv.Error as exc:
        raise TapFileError(f"{source}:1: not CSV: {exc}") from None
    _check_header(header, source)
    out = TapFile()
    reading = _Reading(policy, header, source)
    line = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a field past csv's size limit, a stray NUL
            reading.bad(line, f"not CSV: {exc}")
            break
        if row:  # csv gives a blank line as []
            reading.row(line, row, out)
        line = reader.line_num + 1
    if reading.bad_lines:
        more = reading.bad_lines - len(reading.problems)
        listed = f" (the first {len(reading.problems)} above)" if more else ""
        raise TapFileError(f"{source}: {reading.bad_lines} bad "
                           f"line{'s' if reading.bad_lines > 1 else ''}{listed}; "
                           "nothing priced", reading.problems, reading.bad_lines)
    if not out.taps:
        raise TapFileError(f"{source}: no taps (a header and nothing else)")
    for card, (category, _) in reading.named.items():
        out.categories[card] = category
    for tap in out.taps:
        out.categories.setdefault(tap.card, policy.default_category)
    return out


def _check_header(header: list[str], source: str) -> None:
    seen: set[str] = set()
    for name in header:
        if name not in REQUIRED and name not in OPTIONAL:
            raise TapFileError(f"{source}:1: unknown column {name!r} (columns: "
                               f"{', '.join(REQUIRED + OPTIONAL)})")
        if name in seen:
            raise TapFileError(f"{source}:1: column {name!r} twice")
        seen.add(name)
    missing = [name for name in REQUIRED if name not in seen]
    if missing:
        raise TapFileError(f"{source}:1: missing column{'s' if len(missing) > 1 else ''} "
                           f"{', '.join(missing)} (required: {','.join(REQUIRED)})")


class _Reading:
    """The state of a file being read: its problems so far, tap ids and categories."""

    def __init__(self, policy: FarePolicy, header: list[str], source: str) -> None:
        self.policy = policy
        self.header = header
        self.source = source
        self.problems: list[str] = []
        self.bad_lines = 0
        self.tap_lines: dict[str, int] = {}
        self.named: dict[str, tuple[str, int]] = {}  # card -> (category, first line naming it)

    def bad(self, line: int, problem: str) -> None:
        self.bad_lines += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(f"{self.source}:{line}: {problem}")

    def row(self, line: int, row: list[str], out: TapFile) -> None:
        if len(row) != len(self.header):
            self.bad(line, f"{len(row)} fields where the header has {len(self.header)}")
            return
        cells = {name: value.strip() for name, value in zip(self.header, row, strict=True)}
        wrong: list[str] = []
        tap = self._tap(line, cells, wrong)
        category = cells.get("category", "")
        if category and category not in self.policy.categories:
            wrong.append(f"category {category!r} is not one of the policy's "
                         f"({', '.join(self.policy.categories)})")
        elif category and tap is not None:
            first = self.named.get(tap.card, (category, line))
            if first[0] != category:
                wrong.append(f"card {tap.card} is {category} here but {first[0]} on "
                             f"line {first[1]}")
        if tap is not None and tap.tap.tap_id in self.tap_lines:
            wrong.append(f"tap_id {tap.tap.tap_id} is already on line "
                         f"{self.tap_lines[tap.tap.tap_id]}")
        if wrong or tap is None:
            self.bad(line, "; ".join(wrong))
            return
        # Only a good line counts: a bad one says nothing of its card or tap id.
        self.tap_lines[tap.tap.tap_id] = line
        if category:
            self.named.setdefault(tap.card, (category, line))
        out.taps.append(tap)

    def _tap(self, line: int, cells: dict[str, str], wrong: list[str]) -> CsvTap | None:
        before = len(wrong)
        card = _id(cells["card"], "card", wrong)
        vehicle = _id(cells["vehicle_id"], "vehicle_id", wrong)
        route = _id(cells["route_id"], "route_id", wrong)
        device = _id(cells.get("device_id") or DEFAULT_DEVICE, "device_id", wrong)
        kind = cells["kind"]
        if kind not in ("entry", "exit"):
            wrong.append(f"kind {kind!r} is neither entry nor exit")
        try:
            ts = parse_ts(cells["ts"], self.policy.tz)
        except ValueError as exc:
            wrong.append(str(exc))
            ts = 0
        seq = line
        if cells.get("seq"):
            text = cells["seq"]
            seq = int(text) if DIGITS.fullmatch(text) and len(text) <= 18 else 0
            if seq < 1:
                wrong.append(f"seq {text!r} is not a whole number from 1")
        lat_e6, lon_e6 = _position(cells["lat"], cells["lon"], wrong)
        tap_id = cells.get("tap_id") or f"{device}:{seq}"
        if not TAP_ID.fullmatch(tap_id):
            wrong.append(f"tap_id {tap_id!r} is not 1 to 130 letters, digits or . _ : -")
        if len(wrong) > before:
            return None
        return CsvTap(line, card, PricedTap(tap_id, device, seq, ts, vehicle, route, kind,
                                            lat_e6, lon_e6))


def _id(value: str, name: str, wrong: list[str]) -> str:
    if not ID_PATTERN.fullmatch(value):
        wrong.append(f"{name} {value!r} is not 1 to 64 letters, digits or . _ -"
                     if value else f"{name} is empty")
    return value


def parse_ts(text: str, tz: ZoneInfo) -> int:
    """Epoch milliseconds of a `ts` cell: ISO-8601 with an offset, local wall-clock time
    in `tz`, or epoch milliseconds; ValueError says what is wrong."""
    if DIGITS.fullmatch(text):
        ms = int(text) if len(text) <= 15 else LATEST_MS
        if ms < EARLIEST_MS:
            raise ValueError(f"ts {text} is before 2000 as epoch milliseconds (epoch "
                             "seconds? multiply by 1000)")
    else:
        match = ISO_TS.fullmatch(text)
        if match is None:
            raise ValueError(f"ts {text!r} is not {TS_FORMS}")
        try:
            when = datetime.fromisoformat(text)
        except ValueError as exc:  # the right shape, but a 25th hour or a 31 November
            raise ValueError(f"ts {text!r} is no real time ({exc})") from None
        if not 2000 <= when.year <= 2099:  # before localising: year 1 has no UTC
            side = "before 2000" if when.year < 2000 else "after 2099"
            raise ValueError(f"ts {text!r} is {side}")
        if match.group("offset") is None:
            when = _local(when, tz, text)
        ms = (when - EPOCH) // MS
        if ms < EARLIEST_MS:
            raise ValueError(f"ts {text!r} is before 2000")
    if ms >= LATEST_MS:
        raise ValueError(f"ts {text!r} is after 2099")
    return ms


def _local(naive: datetime, tz: ZoneInfo, text: str) -> datetime:
    """A wall-clock time in `tz`, refused where the clocks skip it or show it twice."""
    when = naive.replace(tzinfo=tz)
    if when.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise ValueError(f"ts {text!r} does not exist in {tz.key} (the clocks skip it)")
    if when.utcoffset() != when.replace(fold=1).utcoffset():
        raise ValueError(f"ts {text!r} happens twice in {tz.key} (the clocks go back): "
                         "give its offset")
    return when


def _position(lat: str, lon: str, wrong: list[str]) -> tuple[int, int]:
    """Degrees to the wire's micro-degrees; both empty: no position (0, 0)."""
    if not lat and not lon:
        return 0, 0
    if not lat or not lon:
        wrong.append("lat and lon must be given together (both empty: no position)")
        return 0, 0
    out = []
    for name, text, limit in (("lat", lat, 90), ("lon", lon, 180)):
        try:
            degrees = float(text)
        except ValueError:
            degrees = math.nan
        if not math.isfinite(degrees) or not -limit <= degrees <= limit:
            wrong.append(f"{name} {text!r} is not degrees from -{limit} to {limit}")
            degrees = 0.0
        out.append(round(degrees * 1_000_000))
    return out[0], out[1]
