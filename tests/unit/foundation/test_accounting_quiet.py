"""dp-accounting's absl warnings about excluded fractional RDP orders do not reach the caller's log."""

from __future__ import annotations

import logging

import pytest
from dp_accounting import rdp

from privlab.accounting import epsilon
from privlab.accounting.core import dpsgd_event

SETTING = (1.0, 0.073185, 50, 1e-5)  # (sigma, q, steps, delta): dp-accounting warns at alpha 1.1-1.3 here


def _absl_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "absl" and "failed to converge" in r.getMessage()]


def test_dp_accounting_warns_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    # Positive control: the raw accountant does log these warnings, so the test below can fail.
    sigma, q, t, _ = SETTING
    with caplog.at_level(logging.WARNING, logger="absl"):
        rdp.RdpAccountant().compose(dpsgd_event(sigma, q, t))
    assert _absl_warnings(caplog)


def test_privlab_rdp_epsilon_is_quiet_and_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    sigma, q, t, d = SETTING
    with caplog.at_level(logging.WARNING, logger="absl"):
        level = logging.getLogger("absl").level
        eps = epsilon(sigma, q, t, d, accountant="rdp")
        assert logging.getLogger("absl").level == level  # restored
    assert not _absl_warnings(caplog)
    raw = rdp.RdpAccountant()
    raw.compose(dpsgd_event(sigma, q, t))
    assert eps == pytest.approx(raw.get_epsilon(d))
