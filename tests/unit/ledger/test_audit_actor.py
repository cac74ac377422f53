"""Who the audit trail says ran a command: the effective uid's user, never USER,
LOGNAME or SUDO_USER, which anyone running it may set."""

from __future__ import annotations

import os
import pwd

import pytest

from ledger.audit import Actor, command_user

ME = pwd.getpwuid(os.geteuid()).pw_name


def test_a_command_is_recorded_as_the_user_of_its_effective_uid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("USER", "LOGNAME", "SUDO_USER"):
        monkeypatch.setenv(variable, "sari.wulandari")
    actor = Actor.command()
    assert (actor.kind, actor.id, actor.name) == ("command", ME, ME)
    assert actor.source.startswith("cli@")


def test_the_user_of_a_uid() -> None:
    root = pwd.getpwuid(0).pw_name
    assert command_user(0).id == command_user(0).name == root
    nobody = 2**31 - 7  # a uid with no name, as in a bare container
    with pytest.raises(KeyError):
        pwd.getpwuid(nobody)
    assert command_user(nobody).id == f"uid {nobody}"
