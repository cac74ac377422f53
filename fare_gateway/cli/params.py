"""Command-line parameters that check their value the way the HTTP API does, and a
command whose arguments may be negative numbers."""

from __future__ import annotations

import re

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


NEGATIVE_NUMBER = re.compile(r"-\d+")


class TakesNegativeNumbers(click.Command):
    """A command whose arguments may be negative whole numbers ("-500").

    click reads "-500" as the option "-5": a negative AMOUNT would be refused as "No such
    option", not with the allowed range. When the command line holds such a number, every
    argument goes after a "--" (in its order), which click reads as arguments whatever
    they look like; the options stay in front, so a mistyped one fails as usual.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        head, tail = _split_at_dashes(args)
        if any(NEGATIVE_NUMBER.fullmatch(token) for token in head):
            options, arguments = self._sort(ctx, head)
            args = [*options, "--", *arguments, *tail]
        return super().parse_args(ctx, args)

    def _sort(self, ctx: click.Context, tokens: list[str]) -> tuple[list[str], list[str]]:
        """The options with their values, and the arguments, each in their order."""
        takes_value = {name for param in self.get_params(ctx)
                       if isinstance(param, click.Option) and not param.is_flag
                       and not param.count
                       for name in (*param.opts, *param.secondary_opts)}
        options: list[str] = []
        arguments: list[str] = []
        value_next = False
        for token in tokens:
            if value_next:
                options.append(token)
                value_next = False
            elif token.startswith("-") and not NEGATIVE_NUMBER.fullmatch(token):
                options.append(token)
                value_next = token in takes_value  # "--reference=r1" carries its value
            else:
                arguments.append(token)
        return options, arguments


def _split_at_dashes(args: list[str]) -> tuple[list[str], list[str]]:
    """The tokens before the first "--", and those after it (already arguments)."""
    if "--" not in args:
        return list(args), []
    at = args.index("--")
    return list(args[:at]), list(args[at + 1:])
