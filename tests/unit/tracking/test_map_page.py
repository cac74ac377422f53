"""The map's own page code parses no data as HTML (issue 14, point 7).

The browser test shows a hostile feed rendered as text; this check keeps every file of
the page free of the calls that would parse a string as markup, so that a new tooltip or
panel cannot bring one back. Leaflet's own files are not ours and are not read."""

from __future__ import annotations

import re
from pathlib import Path

import tracking

STATIC = Path(tracking.__file__).parent / "static"
# DOM calls that parse a string as HTML, and Leaflet's content setters, which parse a
# string argument as HTML (they are given elements, or functions returning one).
HTML_SINKS = re.compile(r"\.innerHTML\b|\.outerHTML\b|insertAdjacentHTML|document\.write"
                        r"|createContextualFragment|DOMParser|\bsrcdoc\b")
LEAFLET_CONTENT = re.compile(
    r"\.(bindTooltip|bindPopup|setContent|setTooltipContent|setPopupContent)\(\s*([^,)]*)")
# What a content argument may be: a local variable (holding an element the page built),
# or the start of an arrow function's parameters (a function that builds one).
ELEMENT_ARGUMENT = re.compile(r"[A-Za-z_$][\w$]*|\(")


def page_files() -> list[Path]:
    files = sorted(p for p in STATIC.iterdir() if p.suffix in (".js", ".html"))
    assert any(p.suffix == ".js" for p in files), f"no page code in {STATIC}"
    return files


def test_no_page_file_parses_a_string_as_html() -> None:
    found = [f"{p.name}:{n}: {line.strip()}" for p in page_files()
             for n, line in enumerate(p.read_text().splitlines(), start=1)
             if HTML_SINKS.search(line)]
    assert found == []


def test_leaflet_is_handed_elements_not_strings() -> None:
    """A tooltip's or popup's content is a local holding an element, or an arrow
    function making one: never a literal, a template, a concatenation or a field of the
    data (`s.name`), which Leaflet would parse as HTML."""
    calls = [(p.name, m.group(1), m.group(2).strip()) for p in page_files()
             for m in LEAFLET_CONTENT.finditer(p.read_text())]
    assert calls, "the page binds no tooltip or popup: is this still the map's code?"
    strings = [c for c in calls if not ELEMENT_ARGUMENT.fullmatch(c[2])]
    assert strings == []
