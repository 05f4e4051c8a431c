"""The values README.md prints in its accounting example are what the functions return."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from privlab.accounting import calibrate_noise, epsilon

README = Path(__file__).resolve().parents[3] / "README.md"
CALL = re.compile(r"^((?:epsilon|calibrate_noise)\(.*\))\s+#\s*([0-9.]+)", re.M)


def _claims() -> list[tuple[str, str]]:
    return CALL.findall(README.read_text())


def test_readme_has_accounting_claims() -> None:
    assert {c.split("(")[0] for c, _ in _claims()} == {"epsilon", "calibrate_noise"}


@pytest.mark.parametrize(("call", "shown"), _claims())
def test_readme_value_is_what_the_call_returns(call: str, shown: str) -> None:
    value = eval(call, {"epsilon": epsilon, "calibrate_noise": calibrate_noise})
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    assert round(value, decimals) == pytest.approx(float(shown), abs=10**-decimals / 100), (call, value)
