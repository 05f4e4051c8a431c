"""dp-accounting's absl warnings about excluded fractional RDP orders do not reach the caller's log."""

from __future__ import annotations

import logging
import threading

import pytest
from dp_accounting import rdp

from privlab.accounting import epsilon
from privlab.accounting.core import compose_quietly, dpsgd_event

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


class _BlockingAccountant:
    """compose() logs an absl warning, then waits for ``go`` (to interleave two threads' calls)."""

    def __init__(self, entered: threading.Event, go: threading.Event) -> None:
        self.entered, self.go = entered, go

    def compose(self, event: object) -> None:
        logging.getLogger("absl").warning("failed to converge (fake)")
        self.entered.set()
        assert self.go.wait(10)


def test_overlapping_quiet_compositions_restore_absl_and_spare_other_threads(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("absl")
    e1, go1, e2, go2 = (threading.Event() for _ in range(4))
    with caplog.at_level(logging.WARNING, logger="absl"):
        level = log.level
        t1 = threading.Thread(target=compose_quietly, args=(_BlockingAccountant(e1, go1), None))
        t2 = threading.Thread(target=compose_quietly, args=(_BlockingAccountant(e2, go2), None))
        t1.start()
        assert e1.wait(10)
        t2.start()  # enters while t1 is inside
        assert e2.wait(10)
        log.warning("another thread's absl warning")  # neither composition may swallow it
        go1.set()
        t1.join(10)  # t1 leaves first, t2 last
        go2.set()
        t2.join(10)
        assert log.level == level  # not left raised by the interleaving
        assert [r.getMessage() for r in caplog.records if r.name == "absl"] == ["another thread's absl warning"]
        log.warning("after")
    assert caplog.records[-1].getMessage() == "after"
