"""Dirac audit scores and power figures against naive references; the verdict's three outcomes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privlab.audit.dirac_scores import noiseless_bound, step_likelihood_ratio
from privlab.audit.dp_training import DPTrainingAudit, audit_summary, default_grid
from privlab.audit.stats import AuditResult, audit_one_run_grid, one_run_epsilon, one_run_max_epsilon
from privlab.errors import InvalidParameterError


def test_step_likelihood_ratio_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    u = rng.normal(size=(7, 5)) + (rng.random((7, 5)) < 0.3)
    q, a, s = 0.3, 1.0, 0.8
    want = [sum(math.log((1 - q) + q * math.exp((a * u[t, i] - a * a / 2) / s**2)) for t in range(7)) for i in range(5)]
    np.testing.assert_allclose(step_likelihood_ratio(u, sample_rate=q, signal=a, noise_std=s), want, rtol=1e-12)


def test_step_likelihood_ratio_large_updates_do_not_overflow_and_no_noise_is_the_sum() -> None:
    u = np.array([[1e6, 0.0], [1e6, 0.0]])  # an unclipped canary far above C
    out = step_likelihood_ratio(u, sample_rate=0.1, signal=1.0, noise_std=1.0)
    assert np.isfinite(out).all() and out[0] > 1e5 and out[1] < 0
    np.testing.assert_allclose(step_likelihood_ratio(u, sample_rate=0.1, signal=1.0, noise_std=0.0), u.sum(0))
    with pytest.raises(InvalidParameterError, match="'signal' parameter of step_likelihood_ratio"):
        step_likelihood_ratio(u, sample_rate=0.1, signal=0.0, noise_std=1.0)


def test_likelihood_ratio_orders_like_the_count_without_noise() -> None:
    k = np.array([0, 1, 3, 2])
    u = np.stack([np.r_[np.ones(j), np.zeros(5 - j)] for j in k], axis=1)  # (5, 4): j sampled steps
    out = step_likelihood_ratio(u, sample_rate=0.2, signal=1.0, noise_std=1.0)
    assert list(np.argsort(out)) == list(np.argsort(k))


def test_max_epsilon_is_the_all_correct_bound_and_caps_every_run() -> None:
    grid = default_grid(400)
    per = 0.05 / len(grid)
    want = max(one_run_epsilon(400, 2 * k, 2 * k, delta=1e-5, alpha=per) for k, _ in grid)
    assert one_run_max_epsilon(400, grid, delta=1e-5, alpha=0.05) == pytest.approx(want)
    inc = np.arange(400) % 2 == 0
    perfect = audit_one_run_grid(inc.astype(float), inc, grid=grid, delta=1e-5)
    assert perfect.details["max_epsilon"] == pytest.approx(want)
    assert perfect.epsilon_lower_bound == pytest.approx(want)
    noisy = audit_one_run_grid(np.random.default_rng(0).random(400), inc, grid=grid, delta=1e-5)
    assert noisy.epsilon_lower_bound <= noisy.details["max_epsilon"]


def test_noiseless_bound_grows_with_canaries_and_steps_and_is_deterministic() -> None:
    def nb(m: int, T: int) -> float:
        return noiseless_bound(m, steps=T, sample_rate=0.1, grid=default_grid(m), delta=1e-5, alpha=0.05)

    assert nb(1000, 30) == nb(1000, 30)
    assert nb(100, 30) < nb(1000, 30)
    assert nb(1000, 5) < nb(1000, 30)
    assert nb(1000, 30) <= one_run_max_epsilon(1000, default_grid(1000), delta=1e-5, alpha=0.05)


def _audit(lb: float, power: float | None, details: dict | None = None) -> DPTrainingAudit:
    res = AuditResult("one_run", lb, 0.95, 1e-5, details or {}, claimed_epsilon=2.0)
    return DPTrainingAudit(2.0, 1e-5, 1.0, 0.1, 30, res, None, power_epsilon=power)


def test_verdict_violated_underpowered_consistent() -> None:
    assert _audit(2.5, 1.0).verdict == "VIOLATED"  # a proven violation stands whatever the power figure
    weak = _audit(0.5, 1.5)
    assert weak.verdict == "underpowered" and weak.underpowered
    assert "underpowered" in audit_summary(weak) and "1.500" in audit_summary(weak)
    assert _audit(0.5, 3.0).verdict == "consistent"
    assert _audit(0.5, None, {"max_epsilon": 1.2}).verdict == "underpowered"  # other one-run audits
    assert _audit(0.5, None).verdict == "consistent"  # power unknown (multi-run): as before
    assert _audit(0.5, 1.5).to_dict()["verdict"] == "underpowered"


def test_report_table_says_underpowered() -> None:
    from privlab.report.tables import audit_table

    weak = _audit(0.5, 1.5)
    row = weak.audit.to_dict() | {"verdict": weak.verdict, "power_epsilon": weak.power}
    html = audit_table("dp", [row])
    assert "underpowered" in html and "1.5" in html and ">consistent<" not in html
    ok = _audit(0.5, 3.0)
    assert ">consistent<" in audit_table("dp", [ok.audit.to_dict() | {"verdict": ok.verdict}])


def test_multi_run_reports_its_max_epsilon() -> None:
    from privlab.audit import audit_multi_run

    ins, outs = np.ones(20), np.zeros(20)  # perfectly separated: the bound is the maximum
    for bound in ("eps_delta", "gdp"):
        res = audit_multi_run(ins, outs, delta=1e-5, alpha=0.05, threshold=0.5, bound=bound)
        assert res.epsilon_lower_bound == pytest.approx(res.details["max_epsilon"])
    few = audit_multi_run(ins[:4], outs[:4], delta=1e-5, alpha=0.05, threshold=0.5)
    assert few.details["max_epsilon"] < 1.0  # 8 runs can never refute a claim of 1
