"""The operations map at `/` in a real headless Chromium (Debian's `chromium`, driven by
Playwright; no browser download): sign in with an ops token, see the Transjakarta route
lines, buses appearing and moving as positions are published over MQTT, a bus's details,
the validators panel; nothing fetched from outside localhost, a Content-Security-Policy,
and the token never in a URL. A screenshot is kept in test-artifacts/map.png."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from collections.abc import Iterator
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

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
ROUTE_1_RGB = (0xD0, 0x20, 0x27)  # route_color D02027


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


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_operations_map_in_headless_chromium(system: System, browser: Any,
                                             _clean_redis: None) -> None:
    import_feed(system)
    ops = system.token("ops")
    path = along(feed_shape(ROUTE_1_SHAPE), STEP_M)
    stop_names = {s["name"] for s in feed_trip_stops(ROUTE_1_TRIP)}
    peer = system.peer()
    status_topic = f"{system.prefix}/dev/{system.device_id}/status"
    peer.publish(status_topic, json.dumps({"online": True, "spool_depth": 3}).encode(),
                 qos=1, retain=True)

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}")
            if r.status >= 400 and urlsplit(r.url).path != "/favicon.ico" else None)
    streams: list[Any] = []
    page.on("response", lambda r: streams.append(r)
            if r.url.endswith("/api/v1/vehicles/stream") else None)
    try:
        resp = page.goto(system.gateway.base_url + "/", wait_until="load")
        assert resp is not None and resp.status == 200
        csp = resp.headers.get("content-security-policy", "")
        assert csp, f"no Content-Security-Policy on /: {resp.headers}"
        assert "default-src" in csp or "script-src" in csp, csp

        # sign in with the ops token typed into the form
        page.locator("#login").wait_for(state="visible")
        page.wait_for_load_state("networkidle")
        # (checked at the end, so that everything else is seen too)
        shown_before_login = page.locator("#app").is_visible()
        page.fill("#token", ops)
        page.click("#login button[type=submit]")
        wait_until("the token kept in sessionStorage", lambda: page.evaluate(
            "() => sessionStorage.getItem('transit-token') !== null"))
        page.locator("#map.leaflet-container").wait_for(state="visible", timeout=15_000)
        form_after_login = page.locator("#login").is_visible()

        # the network: one option per route, route lines drawn in their colours
        # (polled from here: the page's CSP rightly forbids the eval wait_for_function needs)
        wait_until("the routes in the follow list", lambda: page.evaluate(
            "() => document.querySelectorAll('#follow option').length > 150"), timeout=20)
        options = page.locator("#follow option").all_text_contents()
        assert any(o.startswith("1 - Blok M - Kota") for o in options), options[:10]
        wait_until("the map's overlay renderer", lambda: page.evaluate(
            "() => document.querySelector('#map .leaflet-overlay-pane canvas,"
            " #map .leaflet-overlay-pane svg') !== null"))
        wait_until("route lines on the map", lambda: drawn_pixels(page) > 2000)
        page.select_option("#follow", "1")  # follow route 1: its line stands out
        wait_until("route 1's red line (D02027)", lambda: route_pixels(page, ROUTE_1_RGB) > 200)

        # validators panel
        row = page.locator("#validators tbody tr", has_text=system.device_id)
        row.wait_for(timeout=15_000)
        cells = row.locator("td").all_text_contents()
        assert cells[1] == "online" and cells[2] == "3", cells

        # buses appear after positions are published
        wait_until("the map's vehicle stream", lambda: streams, timeout=15)
        # The stream subscribes to position events once its snapshot is out: until Redis
        # counts it as a subscriber, a position published now could pass it by.
        wait_until("the stream's subscription to position events",
                   lambda: subscribers(f"transit:{system.prefix}:events") >= 1, timeout=15)
        assert page.locator("div.bus").count() == 0
        # timestamps in the past, so that the whole drive fits before "now": 100 m every
        # 5 s, then every 4 s (25 m/s) for the move
        t0 = now_ms() - 80_000
        # each bus's positions from its own validator
        first = [sent(system, "TJ-0001", *path[i], t0 + i * STEP_MS) for i in range(3)]
        first += [sent(system, "TJ-0002", *path[60 + i], t0 + i * STEP_MS,
                       trip_id=ROUTE_1_TRIP) for i in range(3)]
        first.append(sent(system, "TJ-OLD", *path[100], now_ms() - 100_000))
        peer.publish_many(first)
        bus = page.locator('div.bus[data-vehicle="TJ-0001"]')
        bus.wait_for(state="visible", timeout=15_000)
        page.locator('div.bus[data-vehicle="TJ-0002"]').wait_for(state="visible",
                                                                 timeout=15_000)
        stale = page.locator('div.bus[data-vehicle="TJ-OLD"]')
        stale.wait_for(state="visible", timeout=15_000)
        assert bus.get_attribute("data-state") == "live"
        assert "live" in (bus.get_attribute("class") or "").split()
        assert stale.get_attribute("data-state") == "stale"
        assert "stale" in (stale.get_attribute("class") or "").split()
        before = centre(bus.bounding_box())

        # ... and move after more positions (1.5 km further along route 1, i.e. north)
        t1 = t0 + 3 * STEP_MS
        more = [sent(system, "TJ-0001", *path[3 + i], t1 + i * 4000) for i in range(15)]
        peer.publish_many(more)
        last_ts = t1 + 14 * 4000
        wait_until("TJ-0001's last position in the API", vehicle_at(system, ops, "TJ-0001",
                                                                    last_ts))

        def moved() -> Any:
            now = centre(bus.bounding_box())
            return now if abs(now[0] - before[0]) + abs(now[1] - before[1]) > 20 else None

        after = wait_until("the TJ-0001 marker to move", moved, timeout=15)
        assert path[17][0] > path[2][0]  # the bus went north ...
        assert after[1] < before[1], (before, after)  # ... so its marker went up the screen

        # a bus's details
        bus.click()
        popup = page.locator("dl.popup")
        popup.wait_for(state="visible", timeout=10_000)
        terms = popup.locator("dt").all_text_contents()
        values = popup.locator("dd").all_text_contents()
        details = dict(zip(terms, values, strict=False))
        api = vehicles(system, ops)["TJ-0001"]
        assert details.get("Route") == "1", details
        assert details.get("Next stop") == api["next_stop_name"], (details, api)
        assert details["Next stop"] in stop_names, (details, sorted(stop_names))
        for term in ("Speed", "Last seen", "Taps today"):
            assert details.get(term, "-") != "", details
        assert "km/h" in details.get("Speed", ""), details

        page.wait_for_timeout(500)  # the popup's fade-in
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "map.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        context.close()
        peer.publish(status_topic, b"", qos=1, retain=True)
        peer.close()

    assert not problems, problems
    assert not shown_before_login, "the map and fleet panel (#app) show before signing in"
    assert not form_after_login, "the sign-in form (#login) stays on screen after signing in"
    assert requests, "no requests recorded"
    outside = [u for u in requests if urlsplit(u).scheme not in ("data", "blob")
               and urlsplit(u).hostname not in LOCAL_HOSTS]
    assert not outside, f"requests left localhost: {outside}"
    leaked = [u for u in requests if ops in u]
    assert not leaked, f"the token appeared in a URL: {leaked}"


# -- names from a hostile feed are shown as text (issue 14, point 7) ------------------------

HOSTILE_STOP = ('<a href="https://evil.example/">Session expired: sign in again</a>'
                '<img src=x onerror="window.pwned=1">')
HOSTILE_ROUTE = '<b>Koridor Timur</b><img src=x onerror="window.pwned=2">'
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


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_names_with_markup_are_shown_as_text(system: System, browser: Any,
                                             _clean_redis: None, tmp_path: Path) -> None:
    system.transit("gtfs", "import", str(hostile_feed(tmp_path / "hostile.zip")))
    ops = system.token("ops")
    peer = system.peer()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(system.gateway.base_url + "/", wait_until="load")
        page.fill("#token", ops)
        page.click("#login button[type=submit]")
        page.locator("#map.leaflet-container").wait_for(state="visible", timeout=15_000)
        wait_until("the route in the follow list", lambda: page.evaluate(
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

        # a bus heading for that stop: its popup names it, as text
        ts = now_ms() - 5_000
        lon = WEST + 0.3 * (EAST - WEST)
        peer.publish(pos_topic(system), pos(system, "SBY-0042", LAT, lon, ts, route="T1",
                                            trip_id="T1-0", bearing_deg=90, speed_cms=800))
        wait_until("the bus in the API", vehicle_at(system, ops, "SBY-0042", ts))
        assert vehicles(system, ops)["SBY-0042"]["next_stop_name"] == HOSTILE_STOP
        bus = page.locator('div.bus[data-vehicle="SBY-0042"]')
        bus.wait_for(state="visible", timeout=15_000)
        bus.click()
        popup = page.locator("dl.popup")
        popup.wait_for(state="visible", timeout=10_000)
        details = dict(zip(popup.locator("dt").all_text_contents(),
                           popup.locator("dd").all_text_contents(), strict=True))
        assert details["Next stop"] == HOSTILE_STOP, details

        assert data_elements(page) == []
        assert page.evaluate("() => typeof window.pwned") == "undefined"
    finally:
        context.close()
        peer.close()
    assert not [u for u in requests if "evil.example" in u or u.endswith("/x")], requests
