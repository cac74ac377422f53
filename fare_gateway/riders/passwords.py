"""Riders' secrets as slow hashes: passwords, and cards' check codes (contract section 7).

Both are hashed with argon2id, the memory-hard hash OWASP puts first, at OWASP's
minimum parameters written out below (19 MiB, 2 passes, 1 lane): about 29 ms a hash on
the reference machine (docs/riders.md), so a stolen table costs a guesser that much per
guess and per row, and an eight-digit check code's 10**8 values take a core about a
month each. A login for an e-mail nobody uses verifies a dummy hash of the same
parameters, so that its answer takes as long as a wrong password's and the time does
not tell which e-mails exist.

Hashing runs outside any database transaction, and at most `HASHES_AT_ONCE` at a time
in one process: each holds its 19 MiB while it runs, and a burst of logins on every
server thread would otherwise hold a gigabyte or more; past the number of cores, more
at once only makes each one slower.
"""

from __future__ import annotations

import os
import secrets
import threading
from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum for argon2id (Password Storage Cheat Sheet): m = 19 MiB, t = 2, p = 1.
MEMORY_KIB = 19 * 1024
PASSES = 2
LANES = 1
HASH_BYTES = 32
SALT_BYTES = 16
# A password's length in characters: at least what the contract asks; at most enough for
# any passphrase, so that a huge body cannot make a hash cost more (argon2 reads the
# whole password first) and the stored columns stay bounded.
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
CHECK_CODE_DIGITS = 8
HASHES_AT_ONCE = max(2, os.cpu_count() or 2)

_hasher = PasswordHasher(time_cost=PASSES, memory_cost=MEMORY_KIB, parallelism=LANES,
                         hash_len=HASH_BYTES, salt_len=SALT_BYTES, type=Type.ID)
_slots = threading.BoundedSemaphore(HASHES_AT_ONCE)


def password_problem(password: object) -> str | None:
    """Why `password` cannot be a rider's password, or None if it can."""
    if not isinstance(password, str):
        return "password must be a string"
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    if not _encodable(password):
        return "password must be text (it holds a lone surrogate)"
    return None


def new_check_code() -> str:
    """Eight random decimal digits, from the system's secure source."""
    return f"{secrets.randbelow(10 ** CHECK_CODE_DIGITS):0{CHECK_CODE_DIGITS}d}"


def well_formed_code(code: object) -> bool:
    """Whether `code` has the shape of a check code (eight ASCII digits)."""
    return (isinstance(code, str) and len(code) == CHECK_CODE_DIGITS and code.isascii()
            and code.isdigit())


def hash_secret(secret: str) -> str:
    """The argon2id hash of a password or a check code, salted, in its PHC string form."""
    with _slots:
        return _hasher.hash(secret)


def verify_secret(stored: str | None, secret: str) -> bool:
    """Whether `secret` is the one `stored` hashes, in constant time.

    With `stored` None (no such account, or a card without a code) the dummy hash is
    verified instead and the answer is False: the same work as a wrong secret. A secret
    too long or not encodable is refused after the same work too.
    """
    acceptable = len(secret) <= MAX_PASSWORD and _encodable(secret)
    against = stored if stored is not None and acceptable else _dummy_hash()
    try:
        with _slots:
            _hasher.verify(against, secret if acceptable else "-" * MIN_PASSWORD)
    except (VerificationError, InvalidHashError):
        return False
    return stored is not None and acceptable


def needs_rehash(stored: str) -> bool:
    """Whether a hash was made with other parameters than today's (then hash again)."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def warm_up() -> None:
    """Make the dummy hash now, so that the first login for an unknown e-mail costs no
    more than the others (its first use would otherwise also make it)."""
    _dummy_hash()


@cache
def _dummy_hash() -> str:
    # Made on first use, not at import: nothing runs when a module is imported.
    return hash_secret(secrets.token_urlsafe(16))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
