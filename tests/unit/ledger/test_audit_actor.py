"""Who the audit trail says ran a command: the effective uid's user, never USER or
LOGNAME, with sudo's SUDO_USER only as a claim beside it."""

from __future__ import annotations

import os
import pwd

import pytest

from ledger.audit import Actor, command_user

ME = pwd.getpwuid(os.geteuid()).pw_name


def test_a_command_is_recorded_as_the_user_of_its_effective_uid(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "sari.wulandari")
    monkeypatch.setenv("LOGNAME", "sari.wulandari")
    monkeypatch.delenv("SUDO_USER", raising=False)
    actor = Actor.command()
    assert (actor.kind, actor.id, actor.name) == ("command", ME, ME)
    assert actor.source.startswith("cli@")
    monkeypatch.setenv("SUDO_USER", "budi")
    actor = Actor.command()
    assert (actor.id, actor.name) == (ME, f"{ME} (sudo from budi)")


def test_the_user_of_a_uid_and_a_sudo_claim() -> None:
    root = pwd.getpwuid(0).pw_name
    assert command_user(0, None) == command_user(0, "") == command_user(0, root)
    assert command_user(0, None).name == root
    assert command_user(0, "budi").id == root
    assert command_user(0, "budi").name == f"{root} (sudo from budi)"
    nobody = 2**31 - 7  # a uid with no name, as in a bare container
    with pytest.raises(KeyError):
        pwd.getpwuid(nobody)
    assert command_user(nobody, None).id == f"uid {nobody}"
    assert command_user(nobody, "x" * 100).name == f"uid {nobody} (sudo from {'x' * 32})"
