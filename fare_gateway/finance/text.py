"""Free text from staff, checked: no control characters, and holders' names compared as
people read them.

A control character has no business in a search, a reason or a note: PostgreSQL
refuses a NUL in text (so it would fail the request, not the input), a line break in
a reason would forge a line of a log, and a lone surrogate (which JSON can carry) is no
text at all. Four eyes compares holders' names as a person reads them, so that a
second token for one holder is not told apart by how its name was typed: compatibility
forms folded (NFKC: a full-width `Ｓ` is an `S`), case folded, invisible format
characters (zero-width spaces and joiners) dropped, and any run of white space one space.
"""

from __future__ import annotations

import unicodedata

# Controls (C0, DEL, C1), lone surrogates, and the line and paragraph separators
# (U+2028, U+2029), which viewers break lines on as they do on a line feed.
CONTROL = frozenset(("Cc", "Cs", "Zl", "Zp"))
INVISIBLE = frozenset(("Cc", "Cf", "Cs"))


def has_control(text: str) -> bool:
    """Whether `text` holds a control character, a lone surrogate or a line separator."""
    return any(unicodedata.category(ch) in CONTROL for ch in text)


def holder_key(name: str) -> str:
    """A holder's name as four eyes compares it ("" for a token made without a name)."""
    # NFKC again after casefold: folding can leave a character that normalises further.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    kept = "".join(" " if ch.isspace() else ch for ch in folded
                   if ch.isspace() or unicodedata.category(ch) not in INVISIBLE)
    return " ".join(kept.split())
