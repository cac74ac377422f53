"""The `transit` group in-process (click's CliRunner, no installed command needed): the
subcommands it finds declared, the listing, the one error boundary, and settings named
when they cannot work."""

from __future__ import annotations

import errno
import re
import tomllib
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from tests.unit.commands import clean_runner, one_error
from transit import cli as transit_cli
from transit.cli import COMMANDS, TRANSLATORS, RootGroup, cli, describe, run, subcommands
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError

ROOT = Path(__file__).resolve().parents[3]
OUR_PACKAGES = ("ledger", "tracking", "fare_gateway", "validator_agent", "hardware_sim")


class Untranslated(Exception):
    """An exception only this module's translator knows."""


def translate(exc: BaseException) -> str | None:
    """A package's translator, named lazily like the real ones."""
    return f"translated: {exc}" if isinstance(exc, Untranslated) else None


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:  # type: ignore[no-untyped-def]
    return clean_runner(tmp_path, monkeypatch)


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


def root_group(*commands: click.Command) -> click.Group:
    """A root group like `transit`'s, holding only `commands`."""
    @click.group(cls=RootGroup)
    @click.option("-v", "--verbose", count=True)
    def root(verbose: int) -> None:
        """A root group."""

    for command in commands:
        root.add_command(command)
    return root


def failing(exc: BaseException, name: str = "fail") -> click.Command:
    @click.command(name)
    def command() -> None:
        """Fail."""
        raise exc

    return command


# -- the listing --------------------------------------------------------------------


def test_the_listing_gives_every_description_whole_on_one_line(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = dict(re.findall(r"^  ([a-z][a-z-]*) +(.+)$", result.stdout, re.MULTILINE))
    assert set(subcommands()) <= set(listed), result.stdout
    with click.Context(cli) as ctx:
        for name in subcommands():
            command = cli.get_command(ctx, name)
            assert command is not None
            assert listed[name] == describe(command), name
    commands = result.stdout.split("Commands:")[1]
    assert "..." not in commands
    # The longest descriptions are longer than click's 80-column cut.
    assert max(len(line) for line in commands.splitlines()) > 80


def test_a_subgroup_lists_its_commands_whole_too(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["cards", "--help"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^  topup +Top up a card by AMOUNT \(idempotent by reference\)\.$",
                     result.stdout, re.MULTILINE), result.stdout


def test_describe_takes_the_first_paragraph_whole() -> None:
    @click.command()
    def long() -> None:
        """A first sentence. A second one that goes on well past any terminal's
        width, to be shown whole.

        A second paragraph, not shown.
        """

    assert describe(long) == ("A first sentence. A second one that goes on well past any "
                              "terminal's width, to be shown whole.")


def test_a_command_whose_package_is_missing_names_its_own_extra(
        runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(subcommands(), "ghost",
                        EntryPoint("ghost", "no_such_package.cli:ghost [ghosts]", COMMANDS))
    listing = runner.invoke(cli, ["--help"])
    assert listing.exit_code == 0, listing.output
    assert re.search(r"^  ghost +\(not installed here: pip install "
                     r"'surabaya-transit\[ghosts\]'\)$", listing.stdout, re.MULTILINE)
    line = one_error(runner.invoke(cli, ["ghost"]))
    assert "'transit ghost' needs the package 'no_such_package'" in line
    assert "pip install 'surabaya-transit[ghosts]'" in line


# -- the error boundary -------------------------------------------------------------


def test_an_expected_failure_is_one_line_and_exit_1(runner: CliRunner) -> None:
    result = runner.invoke(root_group(failing(TransitError("the thing is wrong: fix it"))),
                           ["fail"])
    assert result.exit_code == 1
    assert one_error(result) == "Error: the thing is wrong: fix it"


def test_a_fault_is_one_line_that_points_to_the_traceback(runner: CliRunner) -> None:
    group = root_group(failing(RuntimeError("boom\nsecond line")))
    result = runner.invoke(group, ["fail"])
    line = one_error(result)
    assert line.startswith("Error: unexpected RuntimeError: boom second line"), line
    assert "-vv" in line
    debug = runner.invoke(group, ["-vv", "fail"])
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "RuntimeError: boom" in debug.stderr
    assert error_lines(debug) == [line]  # the same one line, after the traceback
    assert debug.stderr.rstrip().splitlines()[-1] == line


def test_failures_of_the_surroundings_are_one_line(runner: CliRunner) -> None:
    denied = PermissionError(errno.EACCES, "Permission denied", "/etc/transit/key")
    assert one_error(runner.invoke(root_group(failing(denied)), ["fail"])) == \
        "Error: /etc/transit/key: permission denied"
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert one_error(runner.invoke(root_group(failing(refused)), ["fail"])) == \
        "Error: connection refused"


def test_packages_translate_their_failures_through_names(
        runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    group = root_group(failing(Untranslated("the third-party way")))
    assert "unexpected Untranslated" in one_error(runner.invoke(group, ["fail"]))
    # A translator that cannot be imported (its package or library is not installed) is
    # skipped; the next one is asked.
    monkeypatch.setattr(transit_cli, "translators", lambda: [
        EntryPoint("a", "no_such_package.cli:explain", TRANSLATORS),
        EntryPoint("b", f"{__name__}:translate", TRANSLATORS)])
    assert one_error(runner.invoke(group, ["fail"])) == "Error: translated: the third-party way"


def test_click_reports_usage_errors_itself(runner: CliRunner) -> None:
    @click.command("need")
    @click.argument("count", type=int)
    def need(count: int) -> None:
        """Need a number."""

    result = runner.invoke(root_group(need), ["need", "many"])
    assert result.exit_code == 2
    assert "'many' is not a valid integer" in one_error(result)


def test_ctrl_c_exits_130_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root_group(failing(KeyboardInterrupt())), ["fail"]) == 130
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == ""


def test_run_gives_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(root_group(failing(TransitError("no"))), ["fail"]) == 1
    assert capsys.readouterr().err.strip() == "Error: no"
    assert run(root_group(failing(TransitError("no"))), ["--help"]) == 0


def test_system_exit_passes_the_boundary() -> None:
    # `reconcile` ends with exit 1 on a mismatch: that is its answer, not a failure.
    with pytest.raises(SystemExit) as exit_:
        root_group(failing(SystemExit(3))).main(["fail"], standalone_mode=False)
    assert exit_.value.code == 3


# -- the shared context ---------------------------------------------------------------


def test_commands_share_one_context_and_what_it_built(
        runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[str] = []

    @click.command("use")
    @pass_transit
    def use(obj: CommandContext) -> None:
        """Use the context."""
        first = obj.once("thing", lambda: recorded.append("built") or "thing",
                         close=lambda _t: recorded.append("closed"))
        again = obj.once("thing", lambda: "another")
        assert first == again == "thing"
        click.echo(obj.settings.topic_prefix)
        click.echo(currency(obj))

    monkeypatch.setitem(cli.commands, "use", use)
    result = runner.invoke(cli, ["use"], env={"TRANSIT_TOPIC_PREFIX": "city/v2"})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["city/v2", "XTS"]
    assert recorded == ["built", "closed"]


def currency(obj: CommandContext) -> str:
    """What a higher package hands the command it builds (as the gateway hands the
    ledger's `settle` the fare policy's terms), built once per run in the context."""
    return obj.once("terms", lambda: "XTS")


def test_a_setting_that_cannot_work_is_named(runner: CliRunner) -> None:
    for name, value in (("TRANSIT_LOG_LEVEL", "LOUD"), ("TRANSIT_BROKER_WAIT_S", "soon"),
                        ("TRANSIT_AUTH_FAILURES", "many"), ("TRANSIT_SECRET_KEY", "abc")):
        result = runner.invoke(cli, ["fares", "check", "x.toml"], env={name: value})
        assert name in one_error(result), (name, result.output)


def test_help_needs_no_valid_settings(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"], env={"TRANSIT_MQTT_URL": "http://nowhere"})
    assert result.exit_code == 0, result.output


# -- the subcommands are declared, not named by the kernel -----------------------------


def test_the_subcommands_are_the_entry_points_the_project_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]
    # The installed metadata is the project's (a stale install would list others).
    for group in (COMMANDS, TRANSLATORS):
        installed = {e.name: e.value for e in entry_points(group=group)}
        assert installed == declared[group], (group, "run pip install -e . again")
    # Every command of contract section 4, each naming the extra that installs it.
    contract = {"demo", "gateway", "agent", "db", "devices", "cards", "tokens", "gtfs",
                "settle", "reconcile"}
    assert contract <= set(subcommands())
    assert all(entry.extras for entry in subcommands().values()), subcommands()
    assert subcommands()["agent"].extras == ["agent"]
    assert subcommands()["settle"].extras == ["gateway"]


def test_the_kernel_names_no_package_of_ours() -> None:
    """Not even as a string: what it runs, it finds declared."""
    names = "|".join(OUR_PACKAGES)
    # A module path ("ledger.cli", "ledger:x") or a quoted name; "the ledger" is a word.
    word = re.compile(rf"\b({names})(?=\.[a-z_]|:[a-z_])|['\"]({names})['\"]")
    named = [(path.name, match.group(0))
             for path in sorted((ROOT / "transit").rglob("*.py"))
             for match in word.finditer(path.read_text())]
    assert named == []


def test_only_the_root_group_reads_the_settings_from_the_environment() -> None:
    """Everything below is handed the settings (or what it needs of them)."""
    readers = sorted(str(path.relative_to(ROOT))
                     for package in ("transit", *OUR_PACKAGES)
                     for path in (ROOT / package).rglob("*.py")
                     if "from_env(" in path.read_text())
    assert readers == ["transit/cli.py", "transit/settings.py"]


def test_a_broken_import_of_our_own_is_a_fault_not_a_missing_extra(
        runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(subcommands(), "broken",
                        EntryPoint("broken", "transit.no_such_module:broken [gateway]",
                                   COMMANDS))
    for args in (["--help"], ["broken"]):
        result = runner.invoke(cli, args)
        line = one_error(result)
        assert line.startswith("Error: unexpected ModuleNotFoundError: No module named "
                               "'transit.no_such_module'"), (args, line)
        assert "a fault in transit" in line and "-vv" in line
        assert "not installed" not in result.output and "pip install" not in result.output
    debug = runner.invoke(cli, ["-vv", "--help"])
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr


# -- usage errors ---------------------------------------------------------------------


def test_a_usage_error_is_one_line_naming_the_help(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["cards", "topup", "04A1B2C3D4E5F6", "100"])
    assert result.exit_code == 2
    assert result.stderr == ("Error: Missing option '--reference' (see 'transit cards topup "
                             "--help')\n")
    unknown = runner.invoke(cli, ["no-such-command"])
    assert unknown.exit_code == 2
    assert unknown.stderr == "Error: No such command 'no-such-command' (see 'transit --help')\n"
    assert run(cli, ["--no-such-option"]) == 2
