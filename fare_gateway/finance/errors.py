"""What the finance use cases refuse, by kind; the views turn each kind into a status."""

from __future__ import annotations


class FinanceError(ValueError):
    """A finance request that cannot be done; `code` says which, for the API."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class BadQuery(FinanceError):
    """A malformed value in the query or the path (a 400)."""


class BadValue(FinanceError):
    """A well-formed request whose values are refused (a 422)."""


class NotFound(FinanceError):
    """Nothing by that name (a 404)."""


class Conflict(FinanceError):
    """The request conflicts with what is recorded (a 409)."""


class SameHolder(FinanceError):
    """The holder who asked for an adjustment may not decide it (a 403)."""


class UnnamedHolder(FinanceError):
    """A token made without a holder's name may not take part in four eyes (a 403)."""
