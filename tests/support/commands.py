"""`transit` commands run inside the test's own process: the set-up steps of tests
(migrate, register a validator, issue a card, make a token), which start no interpreter.

The command is the installed one (the same click group, the same code); only the tests
of the commands themselves, which must see what a user sees, run them as subprocesses
(`testbed.gateway.transit`).
"""

from __future__ import annotations

import os
import subprocess

from click.testing import CliRunner


def transit_here(*args: str, env: dict[str, str], check: bool = True
                 ) -> subprocess.CompletedProcess[str]:
    """Run `transit ARGS` in this process with the settings of `env`."""
    from transit.cli import cli

    # The command reads its settings from the environment: exactly those of `env`.
    overrides: dict[str, str | None] = {k: None for k in os.environ
                                        if k.startswith("TRANSIT_") and k not in env}
    overrides.update({k: v for k, v in env.items() if k.startswith("TRANSIT_")})
    result = CliRunner().invoke(cli, list(args), env=overrides, prog_name="transit")
    done = subprocess.CompletedProcess(["transit", *args], result.exit_code,
                                       result.stdout, result.stderr)
    if check and result.exit_code != 0:
        detail = result.stderr or repr(result.exception)
        raise AssertionError(f"transit {' '.join(args)}: exit {result.exit_code}\n{detail}")
    return done
