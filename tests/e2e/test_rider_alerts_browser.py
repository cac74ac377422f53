"""The service alerts on the passengers' page, in a real headless Chromium against a real
gateway: a rider whose card rode route R1 logs in on a phone and reads, above the cards,
the alerts of R1 and of the whole network (not those of R2), in Indonesian and then in
English; the operators' text is shown as text, never as markup."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import System
from tests.e2e.test_map_browser import browser  # noqa: F401
from tests.e2e.test_rider_browser import PHONE, TIMEOUT_MS, Watch, shot
from tests.support.clients import make_tap
from tests.support.feeds import SMALL, write_feed
from tests.support.riders import PASSWORD, call, issue, link, log_in, sign_up

CARD = "04D1D2D3D4D5D6"


# On SQLite: what is checked is the page; the alerts' queries have their PostgreSQL
# tests (tests/integration/tracking/test_alerts.py), and SQLite migrates in a fraction
# of the time.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_rider_reads_the_alerts_of_their_routes_in_both_languages(
        system: System, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    system.transit("gtfs", "import", str(write_feed(tmp_path / "feed.zip", SMALL)))
    admin, ops = system.token("admin"), system.token("ops")
    code = issue(system, admin, CARD, balance=10_000)
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic())
        peer.publish(system.tap_topic(), make_tap(
            system.secret, system.device_id, 1, CARD, ts=int(time.time() * 1000),
            lat_e6=-7_350_900, lon_e6=112_724_300).encode())
        peer.wait_for(lambda m: len(m) >= 1)
    finally:
        peer.close()
    email = f"alerts-{CARD.lower()}@contoh.id"
    sign_up(system, email)
    assert link(system, log_in(system, email), CARD, code)[0] == 201
    alerts = [
        {"header": {"id": "Pengalihan <b>R1</b>", "en": "Detour <b>R1</b>"},
         "description": {"id": "Lewat Jl. Raya Waru.", "en": "By Jl. Raya Waru."},
         "effect": "DETOUR", "route_ids": ["R1"]},
        {"header": "Mogok", "description": "Layanan terbatas.", "effect": "REDUCED_SERVICE"},
        {"header": "Hanya R2", "description": "Bukan rute Anda.", "route_ids": ["R2"]},
    ]
    made = []
    for body in alerts:
        status, alert = call(system, "POST", "/api/v1/alerts", body, ops)
        assert status == 201, alert
        made.append(alert["alert_id"])

    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                locale="id-ID", timezone_id="Asia/Jakarta")
    watch = Watch(phone)
    page = watch.page(phone)
    try:
        page.goto(system.gateway.base_url + "/rider/", wait_until="load")
        page.fill("#login-email", email)
        page.fill("#login-password", PASSWORD)
        page.click("#login-form button[type=submit]")
        shown = page.locator("#alerts-list li.alert")
        expect(shown).to_have_count(2)
        expect(page.locator("#alerts-title")).to_have_text("Info layanan untuk rute Anda")
        detour = page.locator(f'li.alert[data-id="{made[0]}"]')
        expect(detour.locator(".alert-header")).to_have_text("Pengalihan <b>R1</b>")
        expect(detour.locator(".effect")).to_have_text("Pengalihan rute")
        expect(detour.locator(".alert-where")).to_have_text("Rute R1")
        strike = page.locator(f'li.alert[data-id="{made[1]}"]')
        expect(strike.locator(".alert-where")).to_have_text("Seluruh jaringan")
        assert page.locator(f'li.alert[data-id="{made[2]}"]').count() == 0
        assert page.locator("main b").count() == 0  # markup from the API stays text
        shot(page, "rider-alerts-id.png")

        page.click('[data-lang="en"]')
        expect(detour.locator(".alert-header")).to_have_text("Detour <b>R1</b>")
        expect(detour.locator(".alert-description")).to_have_text("By Jl. Raya Waru.")
        expect(detour.locator(".effect")).to_have_text("Detour")
        expect(strike.locator(".alert-where")).to_have_text("Whole network")
        expect(strike.locator(".alert-header")).to_have_text("Mogok")  # no English text
        assert strike.get_attribute("lang") == "id"
        shot(page, "rider-alerts-en.png")
        assert watch.failures == [] and watch.problems == [], (watch.failures,
                                                               watch.problems)
    finally:
        phone.close()
