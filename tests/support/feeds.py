"""GTFS feeds built by tests: a small valid one to vary, and hostile ones made the way an
attacker would make them (a zip bomb, a header that lies, a zip of many thousand files,
a feed at every limit at once). Big members are written as they are generated, so that
no test holds them in memory."""

from __future__ import annotations

import csv
import io
import random
import struct
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from tracking.gtfs_files import MAX_ROWS, Limits

MiB = 1 << 20

# A corridor of the demo network: two agencies (one only named by routes.txt), stop ids
# with spaces as real feeds have them, a shape, two trips sharing an id (as the
# Transjakarta feed does) and their stop times.
SMALL: dict[str, str] = {
    "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\n"
                  "SBY,Suroboyo Bus,https://dishub.surabaya.go.id,Asia/Jakarta\n",
    "routes.txt": "route_id,agency_id,route_short_name,route_long_name,route_color\n"
                  "R1,SBY,R1,Terminal Purabaya - Rajawali,E4002B\n"
                  "R2,TSS,R2,Kenjeran - Gubeng,00A0E0\n",
    "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
                 "Terminal Purabaya,Terminal Purabaya,-7.35090,112.72430\n"
                 "SBY-WARU,Bundaran Waru,-7.34340,112.72860\n"
                 "SBY-RAJAWALI,Rajawali,-7.23590,112.73380\n",
    "shapes.txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n"
                  "R1-0,-7.35090,112.72430,1\nR1-0,-7.34340,112.72860,2\n"
                  "R1-0,-7.23590,112.73380,3\n",
    "trips.txt": "route_id,service_id,trip_id,trip_headsign,direction_id,shape_id\n"
                 "R1,daily,T1,Rajawali,0,R1-0\nR2,daily,T1,Gubeng,1,\n",
    "stop_times.txt": "trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
                      "T1,,,Terminal Purabaya,1\nT1,,,SBY-WARU,2\nT1,,,SBY-RAJAWALI,3\n"
                      "T1,,,SBY-RAJAWALI,1\nT1,,,SBY-WARU,2\n",
}

Content = str | bytes | Iterable[bytes]


def write_feed(path: Path, files: Mapping[str, Content], *,
               method: int = zipfile.ZIP_DEFLATED, level: int = 6) -> Path:
    """A zip of `files`; a member given as an iterable of chunks is written as they come."""
    with zipfile.ZipFile(path, "w", method, compresslevel=level) as z:
        for name, content in files.items():
            if isinstance(content, str | bytes):
                z.writestr(name, content)
                continue
            with z.open(name, "w") as member:
                for chunk in content:
                    member.write(chunk)
    return path


def changed(name: str, content: Content, files: Mapping[str, Content] = SMALL
            ) -> dict[str, Content]:
    """`files` with one member replaced (or added)."""
    return {**files, name: content}


def repeated(byte: bytes, size: int, chunk: int = MiB) -> Iterator[bytes]:
    """`size` bytes of one repeated byte, a chunk at a time."""
    block = byte * chunk
    for _ in range(size // chunk):
        yield block
    yield byte * (size % chunk)


def zip_bomb(path: Path, name: str = "stops.txt", size: int = 1 << 30) -> Path:
    """The small feed with `name` replaced by `size` bytes of one byte, compressed at
    zlib level 9 (1 GiB becomes about 1 MB)."""
    return write_feed(path, changed(name, repeated(b"7", size)), level=9)


def many_members(path: Path, count: int) -> Path:
    """The small feed plus `count` empty files."""
    with zipfile.ZipFile(write_feed(path, SMALL), "a") as z:
        for i in range(count):
            z.writestr(f"extra/{i}.txt", b"")
    return path


def rewrite_entry(path: Path, name: str, *, size: int | None = None,
                  local_size: int | None = None, flags: int | None = None) -> Path:
    """Rewrite what `name` declares of itself, leaving its data as it is: its uncompressed
    size in the central directory (`size`) or in its local header (`local_size`), or its
    flags in both."""
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    at = struct.unpack_from("<L", data, end + 16)[0]
    while data[at:at + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<3H", data, at + 28)
        local = struct.unpack_from("<L", data, at + 42)[0]
        if bytes(data[at + 46:at + 46 + name_len]).decode() == name:
            if size is not None:
                struct.pack_into("<L", data, at + 24, size)
            if local_size is not None:
                struct.pack_into("<L", data, local + 22, local_size)
            if flags is not None:
                struct.pack_into("<H", data, at + 8, flags)
                struct.pack_into("<H", data, local + 6, flags)
            path.write_bytes(bytes(data))
            return path
        at += 46 + name_len + extra_len + comment_len
    raise KeyError(name)


BUS = "\N{BUS}"
# Text of 4-byte characters that deflate squeezes no better than real text (slices at
# scattered offsets of a pool larger than its 32 KiB window), so that a feed made of it
# stays under the limit on compression ratios.
_POOL = "".join(random.Random(14).choices([chr(c) for c in range(0x1F300, 0x1F600)], k=1 << 16))


def _text(i: int, chars: int) -> str:
    start = (i * 7919) % (len(_POOL) - chars)
    return _POOL[start:start + chars]


def _long_id(prefix: str, i: int, width: int = 64) -> str:
    return f"{prefix}{i:010d}".ljust(width, "x")


def _wide_stop_id(i: int) -> str:
    """100 characters, 90 of them taking 4 bytes each."""
    return f"{i:010d}".rjust(100, BUS)


def _lines(header: str, rows: Iterable[str]) -> Iterator[bytes]:
    yield (header + "\n").encode()
    batch: list[str] = []
    for row in rows:
        batch.append(row)
        if len(batch) == 10_000:
            yield ("\n".join(batch) + "\n").encode()
            batch = []
    yield ("\n".join(batch) + "\n").encode() if batch else b""


def at_the_limits(path: Path, limits: Limits | None = None) -> Path:
    """The costliest feed the importer accepts: every file at its row limit, every id
    unique and as long as allowed, every name as long as kept and made of characters
    that take 4 bytes each (a bus), as many shapes as allowed, and as many stop times as
    fit in the limit on a member's size."""
    limits = limits or Limits()
    rows = {name: limits.rows.get(name, cap) for name, cap in MAX_ROWS.items()}
    agencies, routes, stops, trips = (rows["agency.txt"], rows["routes.txt"],
                                      rows["stops.txt"], rows["trips.txt"])
    per_shape = rows["shapes.txt"] // limits.shapes

    def stop_time(i: int) -> str:
        return f"{_long_id('T', i // per_trip)},,,{_wide_stop_id(i % stops)},{1_000_000 + i}"

    per_trip = 1
    row_bytes = len(stop_time(0).encode()) + 1
    per_trip = min(rows["stop_times.txt"], (limits.member_bytes - 100) // row_bytes) // trips
    files = {
        "agency.txt": _lines("agency_id,agency_name,agency_url,agency_timezone", (
            f"{_long_id('A', i)},{_text(i, 200)},{_text(i + 1, 300)},{'Z' * 64}"
            for i in range(agencies))),
        "routes.txt": _lines(
            "route_id,agency_id,route_short_name,route_long_name,route_color", (
                f"{_long_id('R', i)},{_long_id('A', i % agencies)},{_text(i, 100)},"
                f"{_text(i + 1, 300)},"
                "E4002B" for i in range(routes))),
        "stops.txt": _lines("stop_id,stop_name,stop_lat,stop_lon", (
            f"{_wide_stop_id(i)},{_text(i, 200)},-7.250000,112.750000" for i in range(stops))),
        "shapes.txt": _lines("shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence", (
            f"{_long_id('H', i // per_shape)},-7.250000,112.750000,{1_000_000 + i}"
            for i in range(per_shape * limits.shapes))),
        "trips.txt": _lines(
            "route_id,service_id,trip_id,trip_headsign,direction_id,shape_id", (
                f"{_long_id('R', i % routes)},{_long_id('V', i)},{_long_id('T', i)},"
                f"{_text(i, 200)},1,{_long_id('H', i % limits.shapes)}" for i in range(trips))),
        "stop_times.txt": _lines("trip_id,arrival_time,departure_time,stop_id,stop_sequence",
                                 (stop_time(i) for i in range(per_trip * trips))),
    }
    return write_feed(path, files, level=1)


TIMED_SERVICE = "timed-daily"  # every day of 2020-2099: never expired like the real one


def timed_copy(src: Path, dest: Path, trip_id: str, departures: Sequence[int],
               step_s: int) -> Path:
    """A copy of the feed at `src` in which the trip `trip_id` (an id only one trip
    carries) has a timetable: it leaves at `departures[0]` (seconds of the service day,
    past 24 h allowed) and reaches each next stop `step_s` later, and a copy of it,
    `{trip_id}-2`, `-3`..., leaves at each other departure. They run every day, on a
    service of their own added to calendar.txt."""

    def hms(s: int) -> str:
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"

    def table(text: str) -> tuple[list[str], list[dict[str, str]]]:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return list(reader.fieldnames or ()), list(reader)

    def written(header: list[str], rows: Iterable[dict[str, str]]) -> str:
        out = io.StringIO(newline="")
        writer = csv.DictWriter(out, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    with zipfile.ZipFile(src) as z:
        text = {n: z.read(n).decode("utf-8-sig") for n in z.namelist()}
    files: dict[str, Content] = dict(text)
    ids = [trip_id] + [f"{trip_id}-{n}" for n in range(2, len(departures) + 1)]
    header, trips = table(text["trips.txt"])
    (own,) = [t for t in trips if t["trip_id"] == trip_id]
    trips = [t for t in trips if t["trip_id"] != trip_id] + [
        {**own, "trip_id": i, "service_id": TIMED_SERVICE} for i in ids]
    files["trips.txt"] = written(header, trips)
    header, times = table(text["stop_times.txt"])
    mine = sorted((r for r in times if r["trip_id"] == trip_id),
                  key=lambda r: int(r["stop_sequence"]))
    rest = [r for r in times if r["trip_id"] != trip_id]
    for i, start in zip(ids, departures, strict=True):
        rest += [{**r, "trip_id": i, "arrival_time": hms(start + k * step_s),
                  "departure_time": hms(start + k * step_s)} for k, r in enumerate(mine)]
    files["stop_times.txt"] = written(header, rest)
    header, calendar = table(text.get("calendar.txt", ""))
    header = header or ["service_id", "monday", "tuesday", "wednesday", "thursday",
                        "friday", "saturday", "sunday", "start_date", "end_date"]
    calendar.append({"service_id": TIMED_SERVICE, **dict.fromkeys(header[1:8], "1"),
                     "start_date": "20200101", "end_date": "20991231"})
    files["calendar.txt"] = written(header, calendar)
    return write_feed(dest, files)
