"""Expected failures, and how the `transit` command turns any failure into one line.

Contract section 4: a command that fails because of its input or its surroundings
prints one line saying what is wrong and what to do, and exits non-zero. Our own
expected failures derive from `TransitError`. The failures of the surroundings come as
third-party exceptions (SQLAlchemy, Alembic, sockets, a missing optional package); the
kernel cannot import the libraries that raise them (the on-bus install lacks them), so
each package that uses such a library contributes a *translator*: a function from an
exception to the one line, or None when it does not know the exception. Packages
declare their translators as entry points of the group `transit.errors`
(pyproject.toml); the `transit` group loads them only when a failure needs explaining,
tries them in the order of their names, and skips one that cannot be imported.

What no translator knows is a fault of the program: it still gets one line, with the
exception's type, and a pointer to `-vv`, which prints the traceback.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

Translator = Callable[[BaseException], str | None]
PACKAGE = "surabaya-transit"


class TransitError(Exception):
    """An expected failure whose message says what is wrong and what to do."""


def one_line(text: object) -> str:
    """The text with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(str(text).split())


class Loadable(Protocol):
    """Something that imports and returns an object when asked (an entry point)."""

    def load(self) -> Any: ...


def load_translators(declared: Iterable[Loadable]) -> list[Translator]:
    """The declared translators that can be imported here."""
    found: list[Translator] = []
    for entry in declared:
        try:
            found.append(entry.load())
        except ImportError:  # that package, or the library it translates, is not installed
            continue
    return found


def missing_package(exc: ImportError, command: str, extra: str) -> str:
    """The line for a command that reached for a package its extra did not install."""
    what = f"the package {exc.name!r}" if exc.name else f"a package ({one_line(exc)})"
    return (f"'transit {command}' needs {what}, which is not installed or cannot load: "
            f"install it with {install_hint(extra)}")


def install_hint(extra: str) -> str:
    """The pip command that installs the extra `extra` (or just the package, if none)."""
    return f"pip install '{PACKAGE}[{extra}]'" if extra else f"pip install '{PACKAGE}'"


def cannot_listen(setting: str, host: str, port: int, exc: OSError) -> TransitError:
    """The error for a server address that cannot be listened on."""
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return TransitError(f"{setting} {where} is already in use by another program: stop "
                            f"it, or set {setting} to a free HOST:PORT")
    if exc.errno == errno.EACCES:
        return TransitError(f"{setting} {where}: not allowed to listen there (ports below "
                            f"1024 need privileges): set {setting} to another HOST:PORT")
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return TransitError(f"{setting} {where}: no such address on this machine: set "
                            f"{setting} to one of its addresses")
    return TransitError(f"{setting} {where}: cannot listen there ({exc.strerror or exc})")


def ensure_free(setting: str, host: str, port: int) -> None:
    """Raise the `cannot_listen` error now if nothing could listen on host:port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The same option servers set, so that a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise cannot_listen(setting, host, port, exc) from None


def why_unreachable(host: str, port: int, timeout: float = 2.0) -> str | None:
    """Why a TCP connection to host:port fails now ("connection refused", ...), or None."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve {host} ({exc.strerror})"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()


def explain_os_error(exc: OSError) -> str:
    """One line for a failure of the surroundings: a file, a socket, a permission."""
    what = exc.strerror or one_line(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{exc.filename}: {what.lower()}"
    return what[:1].lower() + what[1:]


def explain(exc: BaseException, translators: Sequence[Translator]) -> str:
    """The one line for any failure: our own, a translated one, or a fault."""
    if isinstance(exc, TransitError):
        return one_line(exc)
    for translate in translators:
        line = translate(exc)
        if line:
            return one_line(line)
    if isinstance(exc, OSError):
        return explain_os_error(exc)
    detail = one_line(exc)
    return (f"unexpected {type(exc).__name__}{': ' + detail if detail else ''} (a fault in "
            "transit: run with -vv for the traceback, and report it)")
