"""How long after an entry the same card counts as a repeat tap at the reader, from the
fare policy file.

The rule is the fare policy's (`repeat_tap_seconds`, contract section 5), but the agent
does not load the server's fare policy (it is deployed alone): it takes the number from
`--repeat-tap-seconds`, else reads that one key from the `TRANSIT_FARES` file when one
is set, else uses the contract's default.
"""

from __future__ import annotations

import tomllib

from transit.errors import TransitError

DEFAULT_SECONDS = 120
MAX_SECONDS = 86_400


def repeat_tap_seconds(fares_file: str) -> int:
    """`repeat_tap_seconds` of the fare policy file `fares_file`, or the default."""
    if not fares_file:
        return DEFAULT_SECONDS
    try:
        with open(fares_file, "rb") as f:
            value = tomllib.load(f).get("repeat_tap_seconds", DEFAULT_SECONDS)
    except OSError as exc:
        raise TransitError(f"TRANSIT_FARES: cannot read {fares_file}: "
                           f"{(exc.strerror or str(exc)).lower()}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TransitError(f"TRANSIT_FARES: {fares_file} is not TOML: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SECONDS:
        raise TransitError(f"TRANSIT_FARES: {fares_file}: repeat_tap_seconds must be a whole "
                           f"number from 0 to {MAX_SECONDS}, got {value!r}")
    return value
