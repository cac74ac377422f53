"""Fare policy files built to break the parser, through the installed commands (issue 14,
contract section 10): `transit fares check` and `transit gateway` (which loads
`TRANSIT_FARES` before anything else) refuse them in one `Error:` line, never a
`RecursionError` or a traceback."""

from __future__ import annotations

from pathlib import Path

from fare_gateway.fares.policy import MAX_POLICY_BYTES
from testbed.gateway import transit
from tests.integration.commands import clean_env, failed


def hostile_policies(folder: Path) -> dict[str, tuple[Path, str]]:
    deep = folder / "deep.toml"
    deep.write_text("currency = " + "[" * 10_000 + "]" * 10_000 + "\n")
    large = folder / "large.toml"
    large.write_text("# a comment\n" * (MAX_POLICY_BYTES // 12 + 1))
    return {"10,000 deep": (deep, "nested too deeply"),
            "over the size limit": (large, f"larger than {MAX_POLICY_BYTES:,} bytes")}


def test_fares_check_refuses_deep_and_large_files_in_one_line(tmp_path: Path) -> None:
    for what, (path, words) in hostile_policies(tmp_path).items():
        result = transit("fares", "check", str(path), env=clean_env(), check=False)
        assert result.returncode == 1, f"{what}: exit {result.returncode}"
        assert "RecursionError" not in result.stdout + result.stderr, what
        failed(result, str(path), words)


def test_the_gateway_refuses_them_as_its_fare_policy(tmp_path: Path) -> None:
    for what, (path, words) in hostile_policies(tmp_path).items():
        env = clean_env(TRANSIT_FARES=str(path),
                        TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/transit.db")
        result = transit("gateway", env=env, check=False)
        assert "RecursionError" not in result.stdout + result.stderr, what
        failed(result, "TRANSIT_FARES", words)
