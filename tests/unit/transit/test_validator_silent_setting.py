"""TRANSIT_VALIDATOR_SILENT_S: the contract's 90 s unless set, for drills and tests."""

from __future__ import annotations

import pytest

from transit.settings import Settings, SettingsError


def test_the_contract_s_90_s_unless_set() -> None:
    assert Settings.from_env({}).validator_silent_s == 90
    assert Settings.from_env({"TRANSIT_VALIDATOR_SILENT_S": ""}).validator_silent_s == 90
    assert Settings.from_env({"TRANSIT_VALIDATOR_SILENT_S": "3"}).validator_silent_s == 3
    assert Settings.from_env({"TRANSIT_VALIDATOR_SILENT_S": "0.5"}).validator_silent_s == 0.5
    handed_on = Settings.from_env({"TRANSIT_VALIDATOR_SILENT_S": "2.5"}).as_env()
    assert Settings.from_env(handed_on).validator_silent_s == 2.5


@pytest.mark.parametrize("raw", ["0", "-1", "601", "soon", "nan", "inf"])
def test_a_threshold_that_cannot_work_is_refused_by_name(raw: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"TRANSIT_VALIDATOR_SILENT_S": raw})
    assert str(refused.value) == ("TRANSIT_VALIDATOR_SILENT_S: seconds, more than 0 and at "
                                  f"most 600, got {raw!r}")
