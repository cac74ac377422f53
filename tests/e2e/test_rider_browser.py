"""The passengers' page at `/rider/` and the staff disputes queue at `/disputes/` in a real
headless Chromium (Debian's, driven by Playwright, as the map's test does), against a real
gateway on PostgreSQL: a card issued and topped up by an admin, taps over MQTT, then a
rider on a phone-sized window signs up, links the card, reads the statement in Indonesian
and in English, and disputes a tap; ops may not refund it (the page says so), finance
refunds it from the queue, and the rider sees the answer and the refund. Then the card is
reported lost and replaced, its balance moving to the new card, and the account is
deleted. Nothing is fetched from outside the gateway, and the tokens never appear in a
URL. Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import System
from tests.e2e.test_map_browser import ARTIFACTS, LOCAL_HOSTS, browser  # noqa: F401
from tests.support.clients import make_tap
from tests.support.feeds import SMALL, write_feed
from tests.support.riders import FLAT_FARES
from transit.wire import Receipt

CARD = "04B1C2D3E4F5A6"
NEW_CARD = "04B1C2D3E4F5B7"
PHONE = {"width": 390, "height": 844}
DESK = {"width": 1280, "height": 900}
PASSWORD = "kata-sandi-rahasia"
SECOND_DEVICE, SECOND_VEHICLE = "SBY-0043-A", "SBY-0043"
# Where the taps are made: two stops of the small feed (tests/support/feeds.py).
PURABAYA = {"lat_e6": -7_350_900, "lon_e6": 112_724_300}
RAJAWALI = {"lat_e6": -7_235_900, "lon_e6": 112_733_800}
MINUS = "\u2212"
WIB_MS, DAY_MS, DAY_START_MS = 7 * 3_600_000, 86_400_000, 3 * 3_600_000
TIMEOUT_MS = 15_000


@pytest.fixture
def base_env(base_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    policy = tmp_path / "fares.toml"
    policy.write_text(FLAT_FARES)
    return {**base_env, "TRANSIT_FARES": str(policy)}


def now_ms() -> int:
    return int(time.time() * 1000)


def clear_of_the_day_start() -> None:
    """Return once the next few seconds stay in one service day (03:00 WIB starts one),
    so that the top-up and the taps share it and the transfer is one."""
    def near() -> bool:
        local = (now_ms() + WIB_MS) % DAY_MS
        return DAY_START_MS - 10_000 <= local < DAY_START_MS
    while near():
        time.sleep(0.2)


def issued(system: System, admin: str, card: str) -> str:
    """Issue `card` through the API; its check code."""
    status, body = system.http.post("/api/v1/cards", {"card": card, "category": "regular"},
                                    admin)
    assert status == 201, body
    return str(body["check_code"])


def rides(system: System) -> dict[str, Receipt]:
    """Two rides (from Terminal Purabaya, then a transfer at Rajawali) and a tap refused
    at the reader, over MQTT; their receipts by tap id."""
    second_secret = system.add_device(SECOND_DEVICE, SECOND_VEHICLE)
    peer = system.peer()
    try:
        peer.subscribe(f"{system.prefix}/dev/+/receipt")
        t0 = now_ms()
        taps = [
            (system.tap_topic(), make_tap(system.secret, system.device_id, 1, CARD, ts=t0,
                                          **PURABAYA)),
            (system.tap_topic(SECOND_DEVICE),
             make_tap(second_secret, SECOND_DEVICE, 1, CARD, ts=t0 + 1000, route_id="R2",
                      vehicle_id=SECOND_VEHICLE, **RAJAWALI)),
            (system.tap_topic(), make_tap(system.secret, system.device_id, 2, CARD,
                                          ts=t0 + 2000, accepted=False, reason="denylisted",
                                          **RAJAWALI)),
        ]
        for topic, tap in taps:
            peer.publish(topic, tap.encode())
        got = peer.wait_for(lambda m: len(m) >= len(taps))
        return {r.tap_id: r for r in (Receipt.parse(p) for _t, p in got)}
    finally:
        peer.close()


class Watch:
    """What a browser context did: requests, failed answers, page errors."""

    def __init__(self, context: Any) -> None:
        self.requests: list[Any] = []
        self.failures: list[tuple[int, str, str]] = []
        self.problems: list[str] = []
        context.on("request", lambda r: self.requests.append(r))
        context.on("response", lambda r: self.failures.append(
            (r.status, r.request.method, urlsplit(r.url).path)) if r.status >= 400 else None)

    def page(self, context: Any) -> Any:
        page = context.new_page()
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" and "Failed to load resource" not in m.text else None)
        return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, name


def texts(locator: Any) -> list[str]:
    return [" ".join(t.split()) for t in locator.all_inner_texts()]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_rider_and_staff_on_their_pages(system: System, browser: Any,  # noqa: F811
                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    system.transit("gtfs", "import", str(write_feed(tmp_path / "feed.zip", SMALL)))
    admin = system.token("admin")
    clear_of_the_day_start()
    code = issued(system, admin, CARD)
    status, _ = system.http.post(f"/api/v1/cards/{CARD}/topups",
                                 {"amount": 50_000, "reference": f"web-{CARD}"}, admin)
    assert status == 201
    receipts = rides(system)
    tap1, tap2, denied = (f"{system.device_id}:1", f"{SECOND_DEVICE}:1",
                          f"{system.device_id}:2")
    assert [(receipts[t].status, receipts[t].fare) for t in (tap1, tap2, denied)] == [
        ("charged", 5000), ("charged", 0), ("not_charged", 0)]
    email = f"rider-{uuid.uuid4().hex[:8]}@contoh.id"

    phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                has_touch=True, locale="id-ID", timezone_id="Asia/Jakarta")
    watch = Watch(phone)
    rider = watch.page(phone)
    desk = browser.new_context(viewport=DESK, locale="id-ID")
    staff_watch = Watch(desk)
    staff = staff_watch.page(desk)
    try:
        resp = rider.goto(system.gateway.base_url + "/rider/", wait_until="load")
        assert resp is not None and resp.status == 200
        assert "default-src 'none'" in resp.headers.get("content-security-policy", "")
        assert rider.evaluate("() => document.documentElement.lang") == "id"

        # -- sign up (and so log in), in Indonesian by default
        expect(rider.locator("#view-login h2")).to_have_text("Masuk")
        rider.click("#to-signup")
        rider.fill("#signup-email", email)
        rider.fill("#signup-password", "pendek")
        rider.click("#signup-form button[type=submit]")
        expect(rider.locator("#error")).to_have_text("Kata sandi paling sedikit 10 karakter.")
        rider.fill("#signup-password", PASSWORD)
        rider.click("#signup-form button[type=submit]")
        expect(rider.locator("#notice")).to_have_text("Akun dibuat. Selamat datang!")
        expect(rider.locator("#cards-empty")).to_be_visible()
        assert rider.evaluate("() => sessionStorage.getItem('transit-rider-token')")

        # -- link the card: a wrong check code is refused in words, the right one links
        wrong = "0" * 8 if code != "0" * 8 else "1" * 8
        rider.fill("#link-card", CARD.lower())
        rider.fill("#link-code", wrong)
        rider.click("#link-form button[type=submit]")
        expect(rider.locator("#error")).to_have_text("Kode cek salah untuk kartu ini.")
        rider.fill("#link-code", code)
        rider.click("#link-form button[type=submit]")
        expect(rider.locator("#notice")).to_have_text(f"Kartu {CARD} tertaut.")
        card = rider.locator(f'li.card[data-card="{CARD}"]')
        expect(card.locator(".amount")).to_have_text("Rp45.000")
        expect(card.locator(".badge")).to_have_text("Aktif")

        # -- the statement in Indonesian, newest first
        card.get_by_role("button", name="Riwayat").click()
        items = rider.locator("#statement li.item")
        expect(items).to_have_count(4)
        assert [(i.get_attribute("data-type"), i.get_attribute("data-amount"),
                 i.get_attribute("data-balance-after")) for i in items.all()] == [
            ("denied", "0", "45000"), ("tap", "0", "45000"), ("tap", "-5000", "45000"),
            ("topup", "50000", "50000")]
        expect(rider.locator("#opening-balance")).to_have_text("Rp0")
        expect(rider.locator("#closing-balance")).to_have_text("Rp45.000")
        first = rider.locator(f'li.item[data-tap-id="{tap1}"]')
        expect(first.locator(".amount")).to_have_text(f"{MINUS}Rp5.000")
        expect(first.locator(".after")).to_have_text("Saldo setelahnya: Rp45.000")
        expect(first.locator(".type")).to_have_text("Naik bus")
        expect(rider.locator("li.item.topup .amount")).to_have_text("+Rp50.000")
        expect(first.locator(".where")).to_have_text(
            "Halte Terminal Purabaya · Rute R1 · Bus SBY-0042")
        id_texts = texts(rider.locator("#statement .explanation"))
        assert all(id_texts) and len(id_texts) == 4, id_texts
        explained = first.locator(".explanation").inner_text()
        assert explained.startswith("Perjalanan baru") and "Rp5.000" in explained, explained
        transfer = rider.locator(f'li.item[data-tap-id="{tap2}"] .explanation').inner_text()
        assert transfer.startswith("Transfer gratis"), transfer
        refused = rider.locator(f'li.item[data-tap-id="{denied}"]')
        expect(refused.locator(".type")).to_have_text("Tap ditolak")
        expect(refused.locator(".explanation")).to_contain_text("daftar tolak")
        shot(rider, "rider-statement-id.png")

        # -- the same in English: the page's words and the gateway's explanations
        rider.click('[data-lang="en"]')
        expect(first.locator(".after")).to_have_text("Balance after: Rp45.000")
        expect(first.locator(".type")).to_have_text("Bus ride")
        expect(first.locator(".explanation")).not_to_have_text(explained)
        en_explained = first.locator(".explanation").inner_text()
        assert en_explained.startswith("New journey") and "Rp5.000" in en_explained, (
            en_explained)
        expect(first.locator(".where")).to_have_text(
            "Stop Terminal Purabaya · Route R1 · Bus SBY-0042")
        assert rider.evaluate("() => localStorage.getItem('transit-lang')") == "en"
        assert rider.evaluate("() => document.documentElement.lang") == "en"
        shot(rider, "rider-statement-en.png")

        # -- a dispute on the first ride
        first.get_by_role("button", name="Dispute this").click()
        expect(rider.locator("#dispute-about")).to_contain_text(f"{MINUS}Rp5.000")
        rider.select_option("#dispute-category", "wrong_fare")
        rider.fill("#dispute-message", "Saya hanya naik satu halte. <b>Mohon dicek</b>")
        rider.click("#dispute-form button[type=submit]")
        expect(rider.locator("#notice")).to_contain_text("sent. We will answer by")
        mine = rider.locator("li.dispute")
        expect(mine).to_have_count(1)
        dispute_id = mine.get_attribute("data-id")
        expect(mine.locator(".badge")).to_have_text("Awaiting answer")
        expect(mine.locator(".message")).to_have_text(
            "Saya hanya naik satu halte. <b>Mohon dicek</b>")
        assert rider.locator("main b").count() == 0  # the rider's markup stays text

        # -- staff: ops sees it in the queue but may not refund; finance does
        staff.goto(system.gateway.base_url + "/disputes/", wait_until="load")
        staff.fill("#token", system.token("ops"))
        staff.click("#login button[type=submit]")
        row = staff.locator(f'#queue tr[data-id="{dispute_id}"]')
        expect(row).to_have_attribute("data-status", "open")
        expect(row.locator("td").nth(2)).to_have_text(CARD)
        expect(row.locator("td").nth(7)).to_contain_text("sisa 47 j")
        row.get_by_role("button").click()
        detail = staff.locator("#detail")
        expect(detail).to_be_visible()
        expect(detail.locator("#detail-message")).to_have_text(
            "Saya hanya naik satu halte. <b>Mohon dicek</b>")
        assert staff.locator("main b").count() == 0  # ... on the staff's page too
        expect(detail.locator('[data-part="tap"]')).to_contain_text(receipts[tap1].device_id)
        expect(detail.locator('[data-part="receipt"]')).to_contain_text("charged")
        expect(detail.locator('[data-part="explanation"] p')).not_to_be_empty()
        staff.select_option("#decision", "refund")
        expect(staff.locator("#amount-hint")).to_contain_text("Rp5.000")
        staff.fill("#amount", "2000")
        staff.fill("#answer-message", "Tarif dikoreksi.")
        staff.click("#answer-form button[type=submit]")
        expect(staff.locator("#answer-error")).to_contain_text(
            "Hanya finance yang boleh mengembalikan dana.")
        shot(staff, "disputes-queue.png")
        staff.click("#logout")
        staff.fill("#token", system.token("finance"))
        staff.click("#login button[type=submit]")
        staff.locator(f'#queue tr[data-id="{dispute_id}"]').get_by_role("button").click()
        expect(detail).to_be_visible()
        staff.select_option("#decision", "refund")
        staff.fill("#amount", "2000")
        staff.fill("#answer-message", "Tarif dikoreksi: Rp2.000 dikembalikan.")
        staff.click("#answer-form button[type=submit]")
        expect(staff.locator("#notice")).to_have_text(
            f"Jawaban untuk keberatan #{dispute_id} terkirim.")
        expect(staff.locator("#detail-answer")).to_contain_text("Dana dikembalikan Rp2.000")
        expect(staff.locator("#answer-form")).to_be_hidden()
        expect(staff.locator(f'#queue tr[data-id="{dispute_id}"]')).to_have_count(0)
        staff.click('[data-filter="answered"]')
        expect(staff.locator(f'#queue tr[data-id="{dispute_id}"]')).to_have_attribute(
            "data-status", "answered")
        staff.locator(f'#queue tr[data-id="{dispute_id}"]').get_by_role("button").click()
        expect(staff.locator("#detail-answer")).to_contain_text("Dana dikembalikan Rp2.000")

        # -- the rider sees the answer, and the refund on the statement
        rider.click('#tabs [data-view="cards"]')
        rider.click('#tabs [data-view="disputes"]')
        expect(mine.locator(".badge")).to_have_text("Answered")
        expect(mine.locator(".decision")).to_have_text("Refunded: Rp2.000")
        expect(mine.locator(".answer-text")).to_have_text(
            "Answer: Tarif dikoreksi: Rp2.000 dikembalikan.")
        rider.click('#tabs [data-view="cards"]')
        expect(card.locator(".amount")).to_have_text("Rp47.000")
        card.get_by_role("button", name="Statement").click()
        refund = rider.locator("#statement li.item").first
        expect(refund).to_have_attribute("data-type", "refund")
        expect(refund.locator(".amount")).to_have_text("+Rp2.000")
        expect(refund.locator(".after")).to_have_text("Balance after: Rp47.000")

        # -- lost, then replaced: the whole balance moves to the new card
        new_code = issued(system, admin, NEW_CARD)
        rider.click('[data-lang="id"]')
        rider.click('#tabs [data-view="cards"]')
        card.get_by_role("button", name="Lapor hilang").click()
        expect(rider.locator("#confirm-text")).to_contain_text(f"Blokir kartu {CARD}?")
        rider.click("#confirm-yes")
        expect(card.locator(".badge")).to_have_text("Diblokir")
        card.get_by_role("button", name="Ganti kartu").click()
        rider.fill("#replace-card", NEW_CARD)
        rider.fill("#replace-code", new_code)
        rider.click("#replace-form button[type=submit]")
        expect(rider.locator("#notice")).to_have_text(
            f"Saldo Rp47.000 dipindah ke kartu {NEW_CARD}.")
        expect(rider.locator(f'li.card[data-card="{NEW_CARD}"] .amount')).to_have_text(
            "Rp47.000")
        expect(card.locator(".amount")).to_have_text("Rp0")

        # -- the account deleted, after a confirmation: its login no longer works
        rider.click('#tabs [data-view="account"]')
        expect(rider.locator("#account-email")).to_have_text(email)
        rider.click("#delete-account")
        rider.click("#confirm-yes")
        expect(rider.locator("#notice")).to_have_text("Akun Anda sudah dihapus.")
        assert rider.evaluate("() => sessionStorage.getItem('transit-rider-token')") is None
        rider.fill("#login-email", email)
        rider.fill("#login-password", PASSWORD)
        rider.click("#login-form button[type=submit]")
        expect(rider.locator("#error")).to_have_text("E-mail atau kata sandi salah.")
    finally:
        phone.close()
        desk.close()

    assert not watch.problems and not staff_watch.problems, (watch.problems,
                                                             staff_watch.problems)
    # The refusals the test asked for, and nothing else.
    assert watch.failures == [(403, "POST", "/api/v1/rider/cards"),
                              (401, "POST", "/api/v1/rider/login")], watch.failures
    assert staff_watch.failures == [
        (403, "POST", f"/api/v1/disputes/{dispute_id}/answer")], staff_watch.failures
    everything = watch.requests + staff_watch.requests
    outside = [r.url for r in everything if urlsplit(r.url).scheme not in ("data", "blob")
               and urlsplit(r.url).hostname not in LOCAL_HOSTS]
    assert not outside, f"requests left the gateway: {outside}"
    assert not [r.url for r in everything if "tt_" in r.url], "a token appeared in a URL"
    statement_langs = [r.headers.get("accept-language") for r in watch.requests
                       if r.url.split("?")[0].endswith("/statement")]
    assert statement_langs[0] == "id" and "en" in statement_langs, statement_langs
