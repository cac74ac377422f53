"""Fare policy files larger or deeper than any real policy are refused with one clear
error before `tomllib` can be made to exhaust memory or the stack (issue 14, contract
section 10); a real policy, however it is padded, still loads."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from fare_gateway.fares.policy import (
    MAX_POLICY_BYTES,
    PolicyError,
    builtin_policy,
    load_policy,
)

BUILTIN = resources.files("fare_gateway.fares").joinpath("surabaya.toml").read_text("utf-8")


def refusal(path: Path) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert caught.value.field == "file" and message.startswith(f"{path}: file: "), message
    assert "\n" not in message, message
    return caught.value


@pytest.mark.parametrize(("what", "text"), [
    ("arrays 10,000 deep", "x = " + "[" * 10_000 + "]" * 10_000 + "\n"),
    ("inline tables 5,000 deep", "x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n"),
    ("arrays of inline tables", "x = " + "[{a = " * 3_000 + "1" + "}]" * 3_000 + "\n"),
])
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path, what: str,
                                                       text: str) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(text)
    assert path.stat().st_size <= MAX_POLICY_BYTES, what  # deep, not large
    assert "nested too deeply" in refusal(path).problem, what


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    padded = BUILTIN + "#" * (MAX_POLICY_BYTES - len(BUILTIN.encode()) - 1) + "\n"
    path = tmp_path / "padded.toml"
    path.write_text(padded)
    assert path.stat().st_size == MAX_POLICY_BYTES
    assert load_policy(path) == builtin_policy()  # at the limit: a policy like any other
    path.write_text(padded + "\n")
    assert f"larger than {MAX_POLICY_BYTES:,} bytes" in refusal(path).problem
    # Even a file with no end is read no further than the limit.
    assert "larger than" in refusal(Path("/dev/zero")).problem
