"""What the operations page shows of the schedule, in a real headless Chromium: on the
real Transjakarta feed, two buses close together on one direction of a route; a bus's
popup has its occupancy and its next stops with predicted times (from the TripUpdates
feed cut to that bus), the headways tab lists the route's buses in order with the
follower marked bunched, and all of it speaks Indonesian first, then English.
Screenshots go to test-artifacts/map-predictions-*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.broker import Broker
from tests.conftest import System
from tests.e2e.test_map_browser import (  # noqa: F401  (browser: a fixture)
    WAIT_MS,
    browser,
    popup_field,
    shot,
    sign_in,
    wait_for_stream,
    watched,
)
from tests.integration.tracking.test_headways import one_pattern_direction, place
from tests.integration.tracking.test_positions import now_ms, vehicles, wait_until
from tests.support.tj_gateway import imported_schedule, tj_gateway

LEAD, FOLLOWER = "TJ-H1", "TJ-H2"


@pytest.fixture
def tj(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A gateway on the Transjakarta network."""
    with tj_gateway(broker, tmp_path_factory.mktemp("tj-page")) as system:
        yield system


def predicted(tj: System, vehicle: str) -> bool:
    """Whether the TripUpdates feed cut to `vehicle` names a stop ahead of it."""
    status, body = tj.http.get(f"/gtfs-rt/trip-updates?format=json&vehicle_id={vehicle}")
    assert status == 200, body
    return any(e.get("tripUpdate", {}).get("stopTimeUpdate") for e in body.get("entity", []))


@pytest.mark.slow
def test_occupancy_next_stops_and_headways_in_headless_chromium(
        tj: System, browser: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    ops = tj.token("ops")
    pattern, trip_id = one_pattern_direction(imported_schedule(tj))
    route = pattern.route_id
    first, run = pattern.stops[0].dist_m, pattern.stops[-1].dist_m - pattern.stops[0].dist_m
    context = browser.new_context(viewport={"width": 1400, "height": 850})
    w = watched(context)
    page = w.page
    try:
        sign_in(w, tj, ops)
        # Playwright hands over the page's events only while it is called: a call each
        # poll, until the vehicle stream's response is seen
        wait_until("the map's vehicle stream",
                   lambda: page.evaluate("() => true") and w.streams, timeout=15)
        wait_for_stream(w, tj)
        # A fifth of the run apart (bunched: 40 % of the half run the two share, as in
        # tests/integration/tracking/test_headways.py), positions 2 s old: live.
        place(tj, pattern, trip_id, {LEAD: first + 0.45 * run, FOLLOWER: first + 0.25 * run},
              now_ms() - 2_000)
        wait_until("both buses on the pattern", lambda: all(
            vehicles(tj, ops).get(v, {}).get("pattern_id") == pattern.pattern_id
            for v in (LEAD, FOLLOWER)), timeout=20)
        wait_until("the lead bus's predictions", lambda: predicted(tj, LEAD), timeout=20)

        # The lead bus's popup: its occupancy (no taps: empty) and its next stops, each
        # with a predicted time
        expect(page.locator(f'div.bus[data-vehicle="{LEAD}"]')).to_have_attribute(
            "data-state", "live", timeout=WAIT_MS)
        page.click(f'#vehicles tbody tr[data-vehicle="{LEAD}"]')
        expect(page.locator("dl.popup")).to_have_attribute("data-vehicle", LEAD,
                                                           timeout=WAIT_MS)
        expect(page.locator("dl.popup dt").nth(6)).to_have_text("Kepadatan")
        expect(popup_field(page, "load")).to_have_text("Kosong (0 %)", timeout=WAIT_MS)
        expect(page.locator(".arrivals-title")).to_have_text("Halte berikutnya")
        stops = page.locator("ol.arrivals li")
        expect(stops.first).to_have_text(re.compile(r"^\d\d[:.]\d\d[:.]\d\d \S"),
                                         timeout=WAIT_MS)
        assert 1 <= stops.count() <= 4, stops.all_text_contents()
        # the picture once the zoom to the bus is over, not of the canvas scaled midway
        expect(page.locator("#map .leaflet-map-pane")).not_to_have_class(
            re.compile(r"leaflet-zoom-anim"))
        shot(page, "predictions-popup")

        # The headways tab: the route's buses in order, the follower bunched
        page.click("[data-tab=headways]")
        expect(page.locator("#headways-note")).to_have_text(
            "Pilih rute untuk melihat jarak antar busnya.")
        page.select_option("#headways-route", route)
        rows = page.locator('#headways li[data-direction="0"] tbody tr')
        expect(rows).to_have_count(2, timeout=WAIT_MS)
        assert [rows.nth(i).get_attribute("data-vehicle") for i in range(2)] == [LEAD, FOLLOWER]
        expect(rows.nth(0).locator("td").nth(3)).to_have_text("Terdepan")
        expect(rows.nth(1)).to_have_class("bunched")
        expect(rows.nth(1).locator(".badge")).to_have_text("Menumpuk")
        expect(rows.nth(1).locator("td").nth(1)).to_have_text(re.compile(r"^[\d.,]+ k?m$"))
        expect(page.locator("#headways-note")).to_contain_text("Menumpuk di bawah 50 %")
        shot(page, "predictions-headways")

        # English: the headways and the popup speak it
        page.click("#panel [data-lang=en]")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("[data-tab=headways]")).to_have_text("Headways")
        expect(rows.nth(1).locator(".badge")).to_have_text("Bunched")
        expect(rows.nth(0).locator("td").nth(3)).to_have_text("Lead")
        expect(page.locator("dl.popup dt").nth(6)).to_have_text("Occupancy")
        expect(popup_field(page, "load")).to_have_text("Empty (0 %)")
        expect(page.locator(".arrivals-title")).to_have_text("Next stops")
        shot(page, "predictions-english")
    finally:
        context.close()
    w.check(ops)
