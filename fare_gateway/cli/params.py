"""Command-line parameters that check their value the way the HTTP API does."""

from __future__ import annotations

import click

from fare_gateway.cards import CardError, parse_card


class CardToken(click.ParamType):
    """A card token: 8-32 upper-case hex digits, refused in the API's words."""

    name = "CARD"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            return parse_card(value)
        except CardError as exc:
            self.fail(f"{exc} (got {str(value)[:40]!r})", param, ctx)


CARD = CardToken()
