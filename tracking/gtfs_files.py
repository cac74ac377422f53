"""Reading a GTFS zip's files in bounded memory, whatever the zip claims.

A zip can claim anything: a 1 MB file can declare a 1 GB member, or hold a hundred
thousand, or a header can understate what its member holds. `Limits` bounds what is
read and kept, measured against the largest real feed we know (Transjakarta's), so that
any file, a zip bomb included, is refused in one line naming the member and the limit,
in bounded memory (contract section 10: 512 MiB for an import of any file). The rows
come out streamed, each reduced to the columns its reader asked for.
"""

from __future__ import annotations

import csv
import io
import struct
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

MiB = 1 << 20

# Rows read per file at most: with every kept field bounded (ids by the contract's rule,
# names cut to their column), these keep any feed inside the memory limit. The
# Transjakarta feed has 4 agencies, 155 routes, 5,365 stops, 574 trips, 86,792 shape
# points and 12,845 stop times; a city's full timetable has tens of thousands of trips.
# Shape points and stop times are kept as `tracking.gtfs.Columns` (20 bytes a row); other
# rows cost up to 2 KB each (200 characters of a name may take 4 bytes each). The
# costliest feed within these limits peaks at 331 MiB (docs/operations.md).
MAX_ROWS = {
    "agency.txt": 1_000,
    "routes.txt": 10_000,
    "stops.txt": 50_000,
    "trips.txt": 50_000,
    "shapes.txt": 1_000_000,
    "stop_times.txt": 2_000_000,
    # A service a row; a date a service a row (a year of daily exceptions for 250
    # services); a time window a trip a row.
    "calendar.txt": 10_000,
    "calendar_dates.txt": 100_000,
    "frequencies.txt": 100_000,
}


@dataclass(frozen=True)
class Limits:
    """What the importer reads at most (docs/operations.md, "Limits on imported files").

    Measured on the Transjakarta feed: 8 members, the largest 4.3 MB uncompressed
    (shapes.txt), compression ratios from 1.8:1 to 5.0:1, lines under 200 characters.
    """

    members: int = 200              # GTFS defines about 30 files
    directory_bytes: int = MiB      # the zip's table of contents, read whole by zipfile
    member_bytes: int = 256 * MiB   # one file, uncompressed, as declared and as read
    ratio: int = 100                # uncompressed / compressed, 20 times the real feed's
    ratio_floor: int = MiB          # a smaller member cannot hurt, whatever its ratio
    line_chars: int = 64 * 1024     # one physical line of a file
    shapes: int = 100_000           # shapes, a shape id's every line counted (594 real)
    rows: Mapping[str, int] = field(default_factory=lambda: dict(MAX_ROWS))


class GtfsError(ValueError):
    """A feed that cannot be imported; the message says where and why."""


_END = struct.Struct("<4s4H2LH")            # end of central directory
_END64_LOCATOR = struct.Struct("<4sLQL")    # zip64 locator, just before it
_END64 = struct.Struct("<4sQ2H2L4Q")        # zip64 end record, just before the locator


def directory_size(path: str | Path) -> int | None:
    """The bytes of the zip's central directory as its end record declares them (None:
    no end record, which `zipfile` reports as not a zip).

    `zipfile.ZipFile` reads the whole directory and makes an object of every entry
    before anything can look at it; this finds the end record the way it does (the last
    22 bytes, else the last signature in the final 64 KiB, then a zip64 record right
    before it) so that an oversized directory is refused first.
    """
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        start = max(0, size - _END.size - 0xFFFF)
        f.seek(start)
        tail = f.read()
    at = len(tail) - _END.size
    if at < 0 or tail[at:at + 4] != b"PK\x05\x06" or tail[-2:] != b"\0\0":
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _END.size > len(tail):
            return None
    cd_size = int(_END.unpack_from(tail, at)[5])
    locator = at - _END64_LOCATOR.size
    record = locator - _END64.size
    if record >= 0 and tail[locator:locator + 4] == b"PK\x06\x07" \
            and tail[record:record + 4] == b"PK\x06\x06":
        cd_size = int(_END64.unpack_from(tail, record)[8])
    return cd_size


class BoundedMember(io.RawIOBase):
    """A member's bytes as read, refused once they pass `limit`, whatever its header
    said: the importer does not rest on `zipfile` stopping at the declared size."""

    def __init__(self, member: IO[bytes], name: str, limit: int) -> None:
        self.member = member
        self.name = name
        self.limit = limit
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.member.read(len(buffer))
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            raise GtfsError(f"{self.name}: more than {self.limit:,} bytes uncompressed (the "
                            "limit), more than its header says")
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.member.close()
        super().close()


def open_zip(path: str | Path, limits: Limits) -> zipfile.ZipFile:
    """The zip at `path`, its table of contents and its number of files within the limits."""
    try:
        cd_size = directory_size(path)
    except OSError as exc:
        raise GtfsError(f"{path}: not a readable zip file ({exc})") from None
    if cd_size is not None and cd_size > limits.directory_bytes:
        raise GtfsError(f"{path}: a table of contents of {cd_size:,} bytes, over the limit "
                        f"of {limits.directory_bytes:,} (a feed has a few dozen files)")
    try:
        feed = zipfile.ZipFile(path)
    except (OSError, EOFError, ValueError, NotImplementedError, zipfile.BadZipFile) as exc:
        # ValueError: a name flagged as UTF-8 that is not; NotImplementedError: a version
        raise GtfsError(f"{path}: not a readable zip file ({exc})") from None
    if len(feed.infolist()) > limits.members:
        count = len(feed.infolist())
        feed.close()
        raise GtfsError(f"{path}: {count:,} files in the zip, over the limit of "
                        f"{limits.members}")
    return feed


def _member(feed: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """Files may sit in a folder inside the zip."""
    for info in feed.infolist():
        if info.filename == name or info.filename.endswith("/" + name):
            return info
    raise GtfsError(f"{name}: missing from the feed")


def has(feed: zipfile.ZipFile, name: str) -> bool:
    """Whether the feed holds the file `name` (the optional files may be absent)."""
    try:
        _member(feed, name)
        return True
    except GtfsError:
        return False


def _open_member(feed: zipfile.ZipFile, name: str, limits: Limits) -> io.TextIOWrapper:
    """The member as text, streamed; its declared sizes checked before a byte is read."""
    info = _member(feed, name)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        # bzip2 and LZMA decompress a whole block at once, without an output bound.
        raise GtfsError(f"{name}: compressed with zip method {info.compress_type}; only "
                        "stored and deflated files are read")
    if info.flag_bits & 0x1:
        raise GtfsError(f"{name}: encrypted")
    if info.file_size > limits.member_bytes:
        raise GtfsError(f"{name}: {info.file_size:,} bytes uncompressed, over the limit of "
                        f"{limits.member_bytes:,}")
    if info.file_size > max(limits.ratio_floor, limits.ratio * max(1, info.compress_size)):
        raise GtfsError(f"{name}: compressed {info.file_size // max(1, info.compress_size):,}"
                        f":1, over the limit of {limits.ratio}:1 (no real feed compresses "
                        "so well)")
    raw = BoundedMember(feed.open(info), name, limits.member_bytes)
    return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8-sig", errors="strict",
                            newline="")


def _lines(text: IO[str], name: str, limits: Limits) -> Iterator[str]:
    """Physical lines, each at most `line_chars` long and free of NUL characters."""
    number = 0
    while True:
        line = text.readline(limits.line_chars + 1)
        if not line:
            return
        number += 1
        if len(line) > limits.line_chars:
            raise GtfsError(f"{name}:{number}: a line longer than {limits.line_chars:,} "
                            "characters (the limit)")
        if "\0" in line:
            raise GtfsError(f"{name}:{number}: a NUL character")
        yield line


def read_rows(feed: zipfile.ZipFile, name: str, limits: Limits, required: tuple[str, ...],
              used: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """The file's rows as (line, {column: stripped value}), streamed, with only the
    `used` columns the file has; a `required` one missing is a GtfsError."""
    line = 1
    try:
        with _open_member(feed, name, limits) as text:
            reader = csv.reader(_lines(text, name, limits))
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise GtfsError(f"{name}: missing column(s) {', '.join(missing)}")
            # As csv.DictReader: a column named twice is read from its last place.
            columns = {c: i for i, c in enumerate(header) if c in used}
            cap = limits.rows[name]
            count = 0
            for record in reader:
                line = reader.line_num
                count += 1  # blank lines too: a member of nothing else takes time as well
                if count > cap:
                    raise GtfsError(f"{name}: more than {cap:,} rows (the limit)")
                if not record:
                    continue
                yield line, {c: record[i].strip() if i < len(record) else ""
                             for c, i in columns.items()}
    except UnicodeDecodeError as exc:
        raise GtfsError(f"{name}: not UTF-8 text at or after line {line} ({exc.reason})"
                        ) from None
    except csv.Error as exc:
        raise GtfsError(f"{name}:{line}: malformed CSV ({exc})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise GtfsError(f"{name}: damaged, or not what its header says ({exc})") from None
