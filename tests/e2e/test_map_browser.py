"""The operations page at `/` in a real headless Chromium (Debian's `chromium`, driven by
Playwright; no browser download), as an operator keeps it open all day.

The first test signs in with an ops token, sees the Transjakarta route lines and the
"no street map" hint, the validators panel, buses appearing, labelled and moving as
positions are published over MQTT, the vehicle list and its search, a bus's popup that
changes as its positions arrive, stop names at close zoom, a replay of the bus's day,
and the switch from Indonesian to English. The second, on a tiny feed whose names carry
markup, sees those names as text (tooltip, popup, list, a service alert), an operators'
alert start and clear, a service alert appear and go after DELETE, and an unknown
card's tap among the exceptions. Both check that nothing is fetched from outside
localhost, that the page has a Content-Security-Policy and that the token is never in
a URL. Screenshots at the key steps go to test-artifacts/map-*.png."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from testbed.environment import REDIS_URL, ROOT
from tests.conftest import System
from tests.integration.tracking.test_positions import (
    ROUTE_1_SHAPE,
    ROUTE_1_TRIP,
    STEP_M,
    STEP_MS,
    along,
    feed_shape,
    feed_trip_stops,
    import_feed,
    now_ms,
    pos,
    pos_topic,
    sent,
    vehicle_at,
    vehicles,
    wait_until,
)
from tests.support.clients import make_tap

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
ROUTE_1_RGB = (0xD0, 0x20, 0x27)  # route_color D02027
WAIT_MS = 15_000  # for Playwright's expectations


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if shutil.which(CHROMIUM) is None:
        raise RuntimeError("Debian chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def _clean_redis(base_env: dict[str, str]) -> Iterator[None]:
    import redis

    prefix = base_env["TRANSIT_TOPIC_PREFIX"]
    yield
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"transit:{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def subscribers(channel: str) -> int:
    """How many clients Redis counts as subscribed to `channel`."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
    finally:
        client.close()


def route_pixels(page: Any, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels of the map's canvas renderer are drawn in about this colour."""
    return int(page.evaluate(
        """([r, g, b, tol]) => {
            let n = 0;
            document.querySelectorAll('#map .leaflet-overlay-pane canvas').forEach((c) => {
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              for (let i = 0; i < d.length; i += 4) {
                if (d[i + 3] > 100 && Math.abs(d[i] - r) < tol && Math.abs(d[i + 1] - g) < tol
                    && Math.abs(d[i + 2] - b) < tol) { n += 1; }
              }
            });
            return n;
        }""", [*rgb, tolerance]))


def drawn_pixels(page: Any) -> int:
    return int(page.evaluate(
        """() => {
            let n = 0;
            const panes = '#map .leaflet-overlay-pane canvas, #map .leaflet-overlay-pane svg path';
            document.querySelectorAll(panes).forEach((c) => {
                if (c.tagName.toLowerCase() !== 'canvas') { n += 1000; return; }
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 3; i < d.length; i += 4) { if (d[i] > 0) { n += 1; } }
              });
            return n;
        }"""))


def centre(box: dict[str, float]) -> tuple[float, float]:
    return (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"map-{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, path


@dataclass
class Watched:
    """A page and what it did: requests made, and errors it met."""

    page: Any
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    streams: list[Any] = field(default_factory=list)

    def check(self, token: str) -> None:
        assert not self.problems, self.problems
        assert self.requests, "no requests recorded"
        outside = [u for u in self.requests if urlsplit(u).scheme not in ("data", "blob")
                   and urlsplit(u).hostname not in LOCAL_HOSTS]
        assert not outside, f"requests left localhost: {outside}"
        leaked = [u for u in self.requests if token in u]
        assert not leaked, f"the token appeared in a URL: {leaked}"


def watched(context: Any) -> Watched:
    page = context.new_page()
    w = Watched(page)
    context.on("request", lambda r: w.requests.append(r.url))
    page.on("pageerror", lambda exc: w.problems.append(f"page error: {exc}"))
    page.on("console", lambda m: w.problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text else None)
    page.on("response", lambda r: w.problems.append(f"HTTP {r.status} for {r.url}")
            if r.status >= 400 and urlsplit(r.url).path != "/favicon.ico" else None)
    page.on("response", lambda r: w.streams.append(r)
            if r.url.endswith("/api/v1/vehicles/stream") else None)
    return w


def sign_in(w: Watched, system: System, token: str) -> None:
    """Open `/`, check its protective headers, and sign in with the token typed in."""
    page = w.page
    resp = page.goto(system.gateway.base_url + "/", wait_until="load")
    assert resp is not None and resp.status == 200
    csp = resp.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp, csp
    page.locator("#login").wait_for(state="visible")
    assert not page.locator("#app").is_visible(), "the map shows before signing in"
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    page.locator("#map.leaflet-container").wait_for(state="visible", timeout=WAIT_MS)
    assert not page.locator("#login").is_visible(), "the sign-in form stays on screen"
    assert page.evaluate("() => sessionStorage.getItem('transit-token')") == token


def wait_for_stream(w: Watched, system: System) -> None:
    wait_until("the map's vehicle stream", lambda: w.streams, timeout=15)
    # The stream subscribes to position events once its snapshot is out: until Redis
    # counts it as a subscriber, a position published now could pass it by.
    wait_until("the stream's subscription to position events",
               lambda: subscribers(f"transit:{system.prefix}:events") >= 1, timeout=15)


def popup_field(page: Any, name: str) -> Any:
    return page.locator(f"dl.popup dd[data-field={name}]")


def track_length(system: System, token: str, vehicle: str) -> int:
    status, body = system.http.get(f"/api/v1/vehicles/{vehicle}/track", token=token)
    assert status == 200, body
    return len(body["positions"])


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_operations_page_in_headless_chromium(system: System, browser: Any,
                                              _clean_redis: None) -> None:
    from playwright.sync_api import expect

    import_feed(system)
    ops = system.token("ops")
    path = along(feed_shape(ROUTE_1_SHAPE), STEP_M)
    stop_names = {s["name"] for s in feed_trip_stops(ROUTE_1_TRIP)}
    peer = system.peer()
    status_topic = f"{system.prefix}/dev/{system.device_id}/status"
    peer.publish(status_topic, json.dumps({"online": True, "spool_depth": 3}).encode(),
                 qos=1, retain=True)
    context = browser.new_context(viewport={"width": 1400, "height": 850})
    w = watched(context)
    page = w.page
    try:
        sign_in(w, system, ops)
        # Indonesian first; no TRANSIT_MAP_TILES in the test's settings: the hint says so
        expect(page.locator("html")).to_have_attribute("lang", "id")
        expect(page.locator("#tiles-hint")).to_be_visible()
        expect(page.locator("#tiles-hint")).to_contain_text("Tanpa peta jalan")
        expect(page.locator("#tiles-hint")).to_contain_text("TRANSIT_MAP_TILES")

        # the network: one option per route, route lines drawn in their colours
        # (polled: the page's CSP rightly forbids the eval wait_for_function needs)
        wait_until("the routes in the route filter", lambda: page.evaluate(
            "() => document.querySelectorAll('#follow option').length > 150"), timeout=20)
        options = page.locator("#follow option").all_text_contents()
        assert any(o.startswith("1 - Blok M - Kota") for o in options), options[:10]
        wait_until("route lines on the map", lambda: drawn_pixels(page) > 2000)
        assert page.locator(".stop-label").count() == 0  # dots only, this far out
        page.select_option("#follow", "1")  # follow route 1: its line stands out
        wait_until("route 1's red line (D02027)", lambda: route_pixels(page, ROUTE_1_RGB) > 200)

        # validators panel
        page.click("[data-tab=validators]")
        row = page.locator("#validators tbody tr", has_text=system.device_id)
        expect(row.locator("td").nth(2)).to_have_text("Daring", timeout=WAIT_MS)
        expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^terdengar \d+ d lalu$"))
        expect(row.locator("td").nth(4)).to_have_text("3")
        page.click("[data-tab=fleet]")

        # buses appear after positions are published; timestamps in the past, so that the
        # whole drive fits before "now": 100 m every 5 s, then every 3 s (33 m/s)
        wait_for_stream(w, system)
        assert page.locator("div.bus").count() == 0
        t0 = now_ms() - 80_000
        first = [sent(system, "TJ-0001", *path[i], t0 + i * STEP_MS) for i in range(3)]
        first += [sent(system, "TJ-0002", *path[60 + i], t0 + i * STEP_MS,
                       trip_id=ROUTE_1_TRIP) for i in range(3)]
        first.append(sent(system, "TJ-OLD", *path[100], now_ms() - 100_000))
        peer.publish_many(first)
        bus = page.locator('div.bus[data-vehicle="TJ-0001"]')
        stale = page.locator('div.bus[data-vehicle="TJ-OLD"]')
        expect(bus).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        expect(page.locator('div.bus[data-vehicle="TJ-0002"]')).to_be_visible()
        expect(stale).to_have_attribute("data-state", "stale", timeout=WAIT_MS)
        assert "live" in (bus.get_attribute("class") or "").split()
        label = page.locator(".bus-icon", has=bus).locator(".bus-label")
        expect(label).to_have_text("TJ-0001 · 1")
        expect(page.locator("#summary")).to_have_text("2 aktif, 1 tertunda, 0 luring")

        # the list: every bus, with its route, state and age; the search narrows it
        rows = page.locator("#vehicles tbody tr:visible")
        expect(rows).to_have_count(3)
        old_row = page.locator('#vehicles tbody tr[data-vehicle="TJ-OLD"]')
        expect(old_row.locator("td").nth(2)).to_have_text("Tertunda")
        expect(old_row.locator("td").nth(3)).to_have_text(re.compile(r"^1\d\d d lalu$"))
        page.fill("#search", "0002")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-vehicle", "TJ-0002")
        page.fill("#search", "")
        expect(rows).to_have_count(3)
        page.select_option("#state-filter", "stale")
        expect(rows).to_have_count(1)
        page.select_option("#state-filter", "")
        shot(page, "fleet")

        # ... and move after more positions (1.5 km further along route 1, i.e. north)
        before = centre(bus.bounding_box())
        t1 = t0 + 3 * STEP_MS
        more = [sent(system, "TJ-0001", *path[3 + i], t1 + i * 3000, speed_cms=2500)
                for i in range(15)]
        peer.publish_many(more)
        wait_until("TJ-0001's last position in the API",
                   vehicle_at(system, ops, "TJ-0001", t1 + 14 * 3000))

        def moved() -> Any:
            now = centre(bus.bounding_box())
            return now if abs(now[0] - before[0]) + abs(now[1] - before[1]) > 20 else None

        after = wait_until("the TJ-0001 marker to move", moved, timeout=15)
        assert path[17][0] > path[2][0]  # the bus went north ...
        assert after[1] < before[1], (before, after)  # ... so its marker went up the screen

        # a row of the list centres the map on its bus and opens its popup
        page.click('#vehicles tbody tr[data-vehicle="TJ-0001"]')
        expect(page.locator("dl.popup")).to_be_visible(timeout=WAIT_MS)
        api = vehicles(system, ops)["TJ-0001"]
        expect(popup_field(page, "route")).to_have_text("1")
        expect(popup_field(page, "next")).to_have_text(api["next_stop_name"])
        assert api["next_stop_name"] in stop_names, (api, sorted(stop_names))
        expect(popup_field(page, "speed")).to_have_text("90 km/j")
        expect(popup_field(page, "taps")).to_have_text("0")
        bus_box, map_box = bus.bounding_box(), page.locator("#map").bounding_box()
        assert abs(centre(bus_box)[0] - centre(map_box)[0]) < 40, (bus_box, map_box)
        # ... whose age ticks by itself
        seen = popup_field(page, "seen").text_content()
        expect(popup_field(page, "seen")).not_to_have_text(seen or "")

        # the popup follows the bus: another position, slower, 900 m on (past Bundaran
        # Senayan, 2.3 km along the route: another next stop)
        page.wait_for_timeout(300)  # the popup's fade-in, for the picture
        shot(page, "popup")
        old_next = api["next_stop_name"]
        last_ts = now_ms()
        peer.publish(*sent(system, "TJ-0001", *path[26], last_ts, speed_cms=500))
        expect(popup_field(page, "speed")).to_have_text("18 km/j", timeout=WAIT_MS)
        api = vehicles(system, ops)["TJ-0001"]
        assert api["next_stop_name"] != old_next, api
        expect(popup_field(page, "next")).to_have_text(api["next_stop_name"])
        expect(popup_field(page, "state")).to_have_text("Aktif")

        # stop names at close zoom, a handful, under the buses
        page.click(".leaflet-control-zoom-in")
        expect(page.locator(".stop-label").first).to_be_visible(timeout=WAIT_MS)
        assert 0 < page.locator(".stop-label").count() <= 120
        expect(page.locator("dl.popup")).to_be_visible()

        # replay of its day: the 19 positions published, at 60×
        wait_until("TJ-0001's day on disk", lambda: track_length(system, ops, "TJ-0001") == 19)
        page.click("dl.popup ~ button")
        expect(page.locator("#replay")).to_be_visible()
        page.select_option("#replay-speed", "60")
        expect(page.locator("#replay-status")).to_contain_text("19 posisi", timeout=WAIT_MS)
        marker = page.locator(".replay-bus")
        start_box = centre(marker.bounding_box())
        times: set[str] = set()

        def played() -> bool:
            times.add(page.locator("#replay-time").text_content() or "")
            return bool(marker.get_attribute("data-ts") == str(last_ts))

        wait_until("the replay to reach the last position", played, timeout=20)
        assert len(times) >= 3, times  # the clock went on, not straight to the end
        end_box = centre(marker.bounding_box())
        assert abs(end_box[0] - start_box[0]) + abs(end_box[1] - start_box[1]) > 20
        expect(page.locator("#replay-toggle")).to_have_text("Ulangi")
        shot(page, "replay")
        page.click("#replay-close")
        expect(page.locator("#replay")).to_be_hidden()
        expect(page.locator(".replay-bus")).to_have_count(0)

        # the English switch: every label, kept for the next visit
        page.click("#panel [data-lang=en]")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("[data-tab=fleet]")).to_have_text("Fleet")
        expect(page.locator("#summary")).to_have_text(re.compile(r"^\d live, \d stale, 0 offline$"))
        expect(page.locator("#tiles-hint")).to_contain_text("No street map")
        expect(old_row.locator("td").nth(3)).to_have_text(re.compile(r"^1\d\d s ago$"))
        expect(page.locator("#vehicles th").nth(4)).to_have_text("Next stop")
        page.click("[data-tab=validators]")
        expect(row.locator("td").nth(2)).to_have_text("Online")
        expect(row.locator("td").nth(3)).to_have_text(re.compile(r"^heard \d+ s ago$"))
        assert page.evaluate("() => localStorage.getItem('transit-lang')") == "en"
        shot(page, "english")
    finally:
        context.close()
        peer.publish(status_topic, b"", qos=1, retain=True)
        peer.close()
    w.check(ops)


# -- names from a hostile feed are shown as text (issue 14, point 7); alerts -------------------

HOSTILE_STOP = ('<a href="https://evil.example/">Session expired: sign in again</a>'
                '<img src=x onerror="window.pwned=1">')
HOSTILE_ROUTE = '<b>Koridor Timur</b><img src=x onerror="window.pwned=2">'
HOSTILE_ALERT = '<b>Jalan ditutup</b><img src=x onerror="window.pwned=3">'
UNKNOWN_CARD = "04DEADBEEF0001"
# One route due east along a parallel, so that the map, fitted to its shape, has the
# middle stop (the hostile one) at its very centre.
LAT = -7.25
WEST, MIDDLE, EAST = 112.70, 112.72, 112.74


def _csv(rows: list[list[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def hostile_feed(path: Path) -> Path:
    """A tiny GTFS feed whose stop and route names carry markup."""
    stops = [("W", "Halte Barat", WEST), ("M", HOSTILE_STOP, MIDDLE), ("E", "Halte Timur", EAST)]
    files = {
        "agency.txt": [["agency_id", "agency_name", "agency_url", "agency_timezone"],
                       ["SBY", "Suroboyo Bus", "https://example.org/", "Asia/Jakarta"]],
        "routes.txt": [["route_id", "agency_id", "route_short_name", "route_long_name",
                        "route_color", "route_type"], ["T1", "SBY", "T1", HOSTILE_ROUTE,
                                                       "D02027", 3]],
        "stops.txt": [["stop_id", "stop_name", "stop_lat", "stop_lon"],
                      *[[sid, name, LAT, lon] for sid, name, lon in stops]],
        "shapes.txt": [["shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"],
                       ["T1-0", LAT, WEST, 1], ["T1-0", LAT, EAST, 2]],
        "trips.txt": [["route_id", "service_id", "trip_id", "direction_id", "shape_id"],
                      ["T1", "daily", "T1-0", 0, "T1-0"]],
        "stop_times.txt": [["trip_id", "arrival_time", "departure_time", "stop_id",
                            "stop_sequence"],
                           *[["T1-0", "", "", sid, i] for i, (sid, _n, _l) in
                             enumerate(stops, start=1)]],
    }
    with zipfile.ZipFile(path, "w") as z:
        for name, rows in files.items():
            z.writestr(name, _csv(rows))
    return path


def data_elements(page: Any) -> list[str]:
    """Elements that only markup in the data could have made."""
    return list(page.evaluate(
        """() => Array.from(document.querySelectorAll(
              'a[href*="evil.example"], img[src="x"], [onerror], b'),
              (el) => el.outerHTML.slice(0, 120))"""))


def exceptions_of(system: System, token: str) -> list[dict[str, Any]]:
    status, body = system.http.get("/api/v1/exceptions", token=token)
    assert status == 200, body
    return list(body["exceptions"])


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_names_with_markup_are_text_and_alerts_come_and_go(
        system: System, browser: Any, _clean_redis: None, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    system.transit("gtfs", "import", str(hostile_feed(tmp_path / "hostile.zip")))
    ops = system.token("ops")
    peer = system.peer()
    context = browser.new_context(viewport={"width": 1400, "height": 850})
    w = watched(context)
    page = w.page
    try:
        sign_in(w, system, ops)
        wait_until("the route in the route filter", lambda: page.evaluate(
            "() => document.querySelectorAll('#follow option').length == 2"), timeout=20)
        assert page.locator("#follow option").all_text_contents()[1] == f"T1 - {HOSTILE_ROUTE}"
        wait_until("the route line", lambda: route_pixels(page, ROUTE_1_RGB) > 200)

        # hover the middle stop, at the centre of the map fitted to the route
        x, y = centre(page.locator("#map").bounding_box())
        tooltip = page.locator(".leaflet-tooltip")

        def hovered() -> bool:
            # Leaflet's canvas reads at most one mouse move in 32 ms: pause between them.
            page.mouse.move(x - 60, y - 60)
            page.wait_for_timeout(100)
            page.mouse.move(x, y)
            page.wait_for_timeout(100)
            return bool(tooltip.count()) and tooltip.first.is_visible()

        wait_until("the middle stop's tooltip", hovered, timeout=20)
        assert tooltip.first.text_content() == HOSTILE_STOP
        assert "&lt;a href=" in tooltip.first.inner_html()

        # a bus last heard 95 s ago: the operators' alerts tell of it ...
        wait_for_stream(w, system)
        lon = WEST + 0.3 * (EAST - WEST)
        peer.publish(pos_topic(system), pos(system, "SBY-0042", LAT, lon, now_ms() - 95_000,
                                            route="T1", trip_id="T1-0", bearing_deg=90))
        page.click("[data-tab=alerts]")
        stale = page.locator('#ops-alerts li[data-kind=vehicle_stale][data-subject="SBY-0042"]')
        expect(stale).to_have_attribute("data-state", "current", timeout=WAIT_MS)
        expect(stale.locator(".kind")).to_have_text("Bus tidak melapor")
        expect(stale.locator(".since")).to_contain_text("sejak")
        expect(page.locator("#alerts-count")).to_have_text("1")
        shot(page, "alerts")

        # ... until a fresh position, heading for the hostile stop: the alert clears, and
        # the popup and the list name that stop, as text
        ts = now_ms() - 5_000
        peer.publish(pos_topic(system), pos(system, "SBY-0042", LAT, lon, ts, route="T1",
                                            trip_id="T1-0", bearing_deg=90, speed_cms=800))
        wait_until("the bus in the API", vehicle_at(system, ops, "SBY-0042", ts))
        assert vehicles(system, ops)["SBY-0042"]["next_stop_name"] == HOSTILE_STOP
        expect(stale).to_have_attribute("data-state", "cleared", timeout=WAIT_MS)
        expect(stale.locator(".mark")).to_have_text("selesai")
        expect(page.locator("#alerts-count")).to_have_text("0")
        page.click("[data-tab=fleet]")
        expect(page.locator('#vehicles tr[data-vehicle="SBY-0042"] td').nth(4)).to_have_text(
            HOSTILE_STOP)
        bus = page.locator('div.bus[data-vehicle="SBY-0042"]')
        expect(bus).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        bus.click()
        expect(popup_field(page, "next")).to_have_text(HOSTILE_STOP, timeout=WAIT_MS)

        # a service alert made through the API shows in its list and over the map, as
        # text; DELETE ends it and it goes
        status, alert = system.http.post("/api/v1/alerts", {
            "header": HOSTILE_ALERT, "description": "Perbaikan jalan di koridor T1",
            "cause": "CONSTRUCTION", "effect": "DETOUR", "route_ids": ["T1"]}, token=ops)
        assert status == 201, alert
        page.click("[data-tab=service]")  # a tab opened shows what is current
        item = page.locator(f'#service-alerts li[data-alert="{alert["alert_id"]}"]')
        expect(item.locator(".header")).to_have_text(HOSTILE_ALERT, timeout=WAIT_MS)
        expect(item).to_contain_text("Pengalihan rute · Pekerjaan jalan")
        expect(page.locator("#banner")).to_have_text(f"Gangguan: {HOSTILE_ALERT} (rute T1)")
        expect(page.locator("#service-count")).to_have_text("1")
        shot(page, "service-alert")
        status, ended = system.http.request("DELETE", f"/api/v1/alerts/{alert['alert_id']}",
                                            token=ops)
        assert status == 200 and ended["state"] == "ended", ended
        page.click("[data-tab=fleet]")
        page.click("[data-tab=service]")
        expect(item).to_have_count(0, timeout=WAIT_MS)
        expect(page.locator("#banner")).to_be_hidden()
        expect(page.locator("#service-note")).to_have_text("Tidak ada gangguan layanan.")

        # an unknown card's tap is an exception: counted per reason and listed
        peer.publish(system.tap_topic(), make_tap(
            system.secret, system.device_id, 1, UNKNOWN_CARD, ts=now_ms() - 1000,
            route_id="T1").encode())
        wait_until("the unknown card among the exceptions",
                   lambda: any(e["card"] == UNKNOWN_CARD for e in exceptions_of(system, ops)))
        page.click("[data-tab=exceptions]")
        chip = page.locator("#exception-counts li[data-reason=unknown_card]")
        expect(chip).to_have_text("Kartu tak dikenal1", timeout=WAIT_MS)
        listed = page.locator("#exceptions tbody tr[data-reason=unknown_card]")
        expect(listed.locator("td").nth(1)).to_have_text(system.device_id)
        expect(listed.locator("td").nth(3)).to_have_text(f"{system.device_id}:1")
        expect(listed.locator("td").nth(4)).to_have_text(UNKNOWN_CARD)
        page.click("#panel [data-lang=en]")
        expect(chip).to_have_text("Unknown card1")
        shot(page, "exceptions")

        assert data_elements(page) == []
        assert page.evaluate("() => typeof window.pwned") == "undefined"
    finally:
        context.close()
        peer.close()
    assert not [u for u in w.requests if "evil.example" in u or u.endswith("/x")], w.requests
    w.check(ops)
