"""Tracking's subcommands of `transit` (`gtfs import`, `tracks prune`, `predictions
learn`), and the translator of a feed's refusal into one line."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import click

from ledger.adapters.db import session_factory
from ledger.cli import engine
from transit.cli import Group
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError


@click.group(cls=Group)
def gtfs() -> None:
    """GTFS network data: agencies, routes, stops, shapes, trips."""


@gtfs.command("import")
@click.argument("feed", type=click.Path(dir_okay=False))
@pass_transit
def gtfs_import(obj: CommandContext, feed: str) -> None:
    """Load agencies, routes, stops, shapes and trips from FEED.zip (replaces the last)."""
    from ledger.audit import Actor
    from ledger.fingerprint import Fingerprints
    from tracking.gtfs import import_feed
    from tracking.integrity import record_network

    sessions = session_factory(engine(obj))
    fingerprints = Fingerprints(obj.settings.secret_key)
    started = time.perf_counter()
    with sessions.begin() as session:
        report = import_feed(session, feed, fingerprints=fingerprints)
        # The routes decide which operator a fare credits: who loaded which file is kept,
        # in the import's own transaction, with the digest of the operators it set.
        record_network(session, fingerprints, Actor.command(), Path(feed).name, {
            "sha256": file_sha256(feed), "agencies": report.agencies,
            "routes": report.routes, "stops": report.stops, "shapes": report.shapes,
            "shape_points": report.shape_points, "trips": report.trips,
            "trip_stops": report.trip_stops})
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"imported {report} in {time.perf_counter() - started:.1f}s")


@click.group(cls=Group)
def tracks() -> None:
    """The vehicles' tracks on disk (kept TRANSIT_TRACK_DAYS days)."""


@tracks.command("prune")
@click.option("--days", type=click.IntRange(min=0), default=None,
              help="keep this many days instead of TRANSIT_TRACK_DAYS (0 drops them all)")
@pass_transit
def tracks_prune(obj: CommandContext, days: int | None) -> None:
    """Remove the track's days older than TRANSIT_TRACK_DAYS (or --days) now, as every
    gateway does at start and hourly."""
    from tracking.adapters.track_sql import SqlTrack
    from tracking.track import TrackUnavailable, oldest_kept_day

    keep = obj.settings.track_days if days is None else days
    if days is None and keep == 0:
        raise TransitError("TRANSIT_TRACK_DAYS is 0: no track is kept, and what was kept "
                           "before stays; give --days N to remove what is older than N days")
    table = SqlTrack(session_factory(engine(obj)))
    try:
        pruned = table.prune(oldest_kept_day(int(time.time() * 1000), keep))
    except TrackUnavailable as exc:
        raise TransitError(f"{exc}: is TRANSIT_DATABASE_URL right and the database "
                           "running?") from None
    click.echo(pruned.describe())


@click.group(cls=Group)
def predictions() -> None:
    """Arrival predictions: the segment times learned from the tracks."""


@predictions.command("learn")
@click.option("--days", type=click.IntRange(min=1, max=366), default=7, show_default=True,
              help="look back this many closed service days (at most the 16 kept)")
@click.option("--most", type=click.IntRange(min=1), default=None,
              help="learn at most this many days, the newest first (the gateway: 1)")
@pass_transit
def predictions_learn(obj: CommandContext, days: int, most: int | None) -> None:
    """Learn each closed service day of the last --days not learned yet (as every
    gateway does at start and hourly, in a child process), one line per day. Exit
    status 0 also when another process is learning (it says so); 1 when it cannot."""
    from sqlalchemy.exc import OperationalError

    from tracking.learn import LearnerBusy, learn_pending
    from tracking.schedule_load import read_schedule

    sessions = session_factory(engine(obj))
    try:
        with sessions() as session:
            schedule = read_schedule(session)
        if not schedule.patterns:
            raise TransitError("no schedule to learn along: run transit gtfs import FEED "
                               "first")
        learned = learn_pending(sessions, schedule, int(time.time() * 1000), days,
                                most=most)
    except LearnerBusy as busy:
        for day in busy.learned:
            click.echo(day.describe())
        click.echo("another process is learning (it holds the learner's lock): it learns "
                   "the days pending")
        return
    except OperationalError as exc:
        raise TransitError(f"cannot read the tracks: {str(exc.orig).strip().splitlines()[0]}"
                           ": is TRANSIT_DATABASE_URL right and the database running?"
                           ) from None
    for day in learned:
        click.echo(day.describe())
    if not learned:
        click.echo(f"nothing to learn: the last {days} closed days are learned already")


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def explain(exc: BaseException) -> str | None:
    """One line for a feed that cannot be imported; None for other failures."""
    from tracking.gtfs import GtfsError

    return str(exc) if isinstance(exc, GtfsError) else None
