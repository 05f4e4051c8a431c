"""Shared audit math against independent oracles (scipy's exact binomial test, dp_accounting's PLD)."""

from __future__ import annotations

import itertools
import math

import dp_accounting
import numpy as np
import pytest
import scipy.stats

from privlab.audit.stats import _common as C
from privlab.errors import InvalidParameterError


@pytest.mark.parametrize("n", [1, 7, 100, 2500])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.3])
def test_clopper_pearson_matches_scipy_binomtest(n: int, alpha: float) -> None:
    ks = np.unique(np.linspace(0, n, 9).astype(int))
    hi = C.clopper_pearson_upper(ks, n, alpha)
    lo = C.clopper_pearson_lower(ks, n, alpha)
    for k, h, low in zip(ks, hi, lo, strict=True):
        ci_hi = scipy.stats.binomtest(int(k), n, alternative="less").proportion_ci(1 - alpha, method="exact")
        ci_lo = scipy.stats.binomtest(int(k), n, alternative="greater").proportion_ci(1 - alpha, method="exact")
        assert h == pytest.approx(ci_hi.high, rel=1e-9, abs=1e-12)
        assert low == pytest.approx(ci_lo.low, rel=1e-9, abs=1e-12)


def _naive_gdp_delta(eps: float, mu: float) -> float:
    phi = scipy.stats.norm.cdf
    return float(phi(-eps / mu + mu / 2) - math.exp(eps) * phi(-eps / mu - mu / 2))


@pytest.mark.parametrize("mu", [0.1, 0.5, 1.0, 2.5])
@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0, 3.0])
def test_gdp_delta_matches_direct_formula(mu: float, eps: float) -> None:
    assert C.gdp_delta(eps, mu) == pytest.approx(_naive_gdp_delta(eps, mu), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 5.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-3])
def test_gdp_epsilon_matches_dp_accounting_pld(sigma: float, delta: float) -> None:
    # Oracle: Google dp_accounting's PLD accountant on one Gaussian mechanism (sensitivity 1).
    acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dp_accounting.GaussianDpEvent(sigma))
    assert C.gdp_epsilon(1.0 / sigma, delta) == pytest.approx(acc.get_epsilon(delta), abs=2e-3)
    eps = C.gdp_epsilon(1.0 / sigma, delta)
    assert C.gdp_delta(eps, 1.0 / sigma) == pytest.approx(delta, rel=1e-6)


def test_gdp_epsilon_edge_cases() -> None:
    assert C.gdp_epsilon(0.0, 1e-5) == 0.0
    assert C.gdp_epsilon(1.0, 0.0) == math.inf
    assert C.gdp_epsilon(1e-3, 0.5) == 0.0  # delta(0) = 2 Phi(mu/2) - 1 < 0.5


def test_eps_delta_bound_and_mu_match_naive() -> None:
    rng = np.random.default_rng(0)
    fpr, fnr = rng.uniform(0.001, 0.999, 200), rng.uniform(0.001, 0.999, 200)
    got = C.eps_delta_bound(fpr, fnr, 1e-3)
    for a, b, g in zip(fpr, fnr, got, strict=True):
        forms = [math.log((1 - 1e-3 - b) / a) if 1 - 1e-3 - b > 0 else -math.inf,
                 math.log((1 - 1e-3 - a) / b) if 1 - 1e-3 - a > 0 else -math.inf]
        assert g == pytest.approx(max(0.0, *forms), abs=1e-12)
    mu = C.gdp_mu_from_rates(fpr, fnr)
    ref = [scipy.stats.norm.ppf(1 - a) - scipy.stats.norm.ppf(b) for a, b in zip(fpr, fnr, strict=True)]
    np.testing.assert_allclose(mu, ref, rtol=1e-9, atol=1e-12)


def test_error_counts_match_loop() -> None:
    rng = np.random.default_rng(1)
    ins, outs = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 30).astype(float)
    ts = C.candidate_thresholds(ins, outs)
    fp, fn = C.error_counts(ins, outs, ts)
    for t, a, b in zip(ts, fp, fn, strict=True):
        assert a == sum(1 for s in outs if s >= t)
        assert b == sum(1 for s in ins if s < t)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, float("nan")], [float("inf")], "abc"])
def test_as_scores_rejects(bad: object) -> None:
    with pytest.raises(InvalidParameterError, match="'x' parameter of F"):
        C.as_scores(bad, "x", "F")


@pytest.mark.parametrize("alpha", [0, 1, 1.5, -0.1, float("nan"), "0.05"])
def test_check_alpha(alpha: object) -> None:
    with pytest.raises(InvalidParameterError, match=r"The 'alpha' parameter of F must be a float in the range \(0"):
        C.check_alpha(alpha, "F")


def test_gdp_epsilon_increasing_in_mu_and_decreasing_in_delta() -> None:
    mus = np.linspace(0.05, 4.0, 30)
    eps = [C.gdp_epsilon(float(u), 1e-5) for u in mus]
    assert all(a < b for a, b in itertools.pairwise(eps))
    assert C.gdp_epsilon(1.0, 1e-3) < C.gdp_epsilon(1.0, 1e-6)
