"""The passengers' page and the disputes queue, in process: served with a strict
Content-Security-Policy and the protective headers, every file they load from the
gateway itself, nothing else under their folder, and every word in both languages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from fare_gateway.http.pages import WEB
from fare_gateway.http.reference import reference_app
from fare_gateway.riders.disputes import CATEGORIES, STATES

PAGES = ("/rider/", "/disputes/")
# Contract section 7: the statement's item types.
ITEM_TYPES = ("tap", "denied", "correction", "topup", "refund", "transfer_in", "transfer_out",
              "adjustment")
LOADED = re.compile(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"')
WORD_KEY = re.compile(r"^ {4}(\w+): ", re.MULTILINE)
# The words a script names: in a call of t(...), or any quoted snake_case string.
NAMED_KEY = re.compile(r'\bt\(\s*"(\w*[a-z0-9])"|"([a-z]+(?:_[a-z0-9]+)+)"')
I18N_ATTR = re.compile(r'data-i18n(?:-placeholder|-label)?="(\w+)"')


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    return reference_app().test_client()


def directives(csp: str) -> dict[str, str]:
    return {part.split()[0]: " ".join(part.split()[1:])
            for part in (p.strip() for p in csp.split(";")) if part}


def test_the_pages_are_served_with_a_policy_that_loads_nothing_from_elsewhere(
        client: FlaskClient) -> None:
    for path in PAGES:
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert resp.mimetype == "text/html", path
        csp = directives(resp.headers["Content-Security-Policy"])
        assert csp["default-src"] == "'none'", csp
        for fetches in ("script-src", "style-src", "connect-src"):
            assert csp[fetches] == "'self'", (path, fetches, csp)
        assert csp["img-src"] == "'self' data:", csp
        assert csp["frame-ancestors"] == "'none'" and csp["base-uri"] == "'none'", csp
        assert csp["form-action"] == "'none'", csp
        # No string may become HTML: textContent only, enforced by the browser.
        assert csp["require-trusted-types-for"] == "'script'", csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-cache", path  # no data in it to keep out
        resp = client.get(path, headers={"Authorization": "Bearer anything"})
        assert resp.headers["Cache-Control"] == "no-store", path

        # Every file the page loads is the gateway's, and is served.
        loaded = LOADED.findall(client.get(path).get_data(as_text=True))
        assert loaded, path
        for url in loaded:
            if url.startswith("data:"):
                continue
            assert url.startswith("/static/pages/"), (path, url)
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.mimetype in ("text/javascript", "text/css"), (url, asset.mimetype)
            assert asset.headers["X-Content-Type-Options"] == "nosniff", url
            assert asset.get_data(), url


def test_nothing_else_is_served_from_the_pages_folder(client: FlaskClient) -> None:
    # A page only at its own address (with its headers), no traversal out of the folder.
    for path in ("/static/pages/rider/index.html", "/static/pages/../http/pages.py",
                 "/static/pages/%2e%2e/http/pages.py", "/static/pages/rider/none.js",
                 "/static/pages/rider/"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert resp.get_json()["error"]["code"] == "not_found", path
    assert client.get("/rider").status_code in (301, 308)  # to /rider/


def words_of(script: Path) -> dict[str, set[str]]:
    """The keys of each language in a words file (`id: {...}, en: {...}`)."""
    text = script.read_text()
    id_part, en_part = text.split("\n  en: {", 1)
    return {"id": set(WORD_KEY.findall(id_part)), "en": set(WORD_KEY.findall(en_part))}


@pytest.mark.parametrize("page", ["rider", "disputes"])
def test_every_text_exists_in_indonesian_and_english(page: str) -> None:
    words = words_of(WEB / page / "words.js")
    assert words["id"] and words["id"] == words["en"], (
        sorted(words["id"] ^ words["en"]))
    keys = words["id"]
    html = (WEB / page / "index.html").read_text()
    script = (WEB / page / f"{page}.js").read_text()
    used = set(I18N_ATTR.findall(html))
    used.update(k for pair in NAMED_KEY.findall(script) for k in pair if k)
    used -= set(CATEGORIES)  # the API's values, shown through `cat_...`
    assert len(used) > 30, page
    assert sorted(used - keys) == [], f"{page}: texts without words"
    # Keys made at run time from the API's values.
    for category in CATEGORIES:
        assert f"cat_{category}" in keys, category
    for state in STATES:
        assert f"state_{state}" in keys, state
    if page == "rider":
        for kind in ITEM_TYPES:
            assert f"type_{kind}" in keys, kind


def test_the_pages_build_no_html_from_strings() -> None:
    for script in WEB.rglob("*.js"):
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (script.name, sink)
