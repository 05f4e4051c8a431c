"""Gaussian-DP estimate from the ROC against a naive loop; the conservative path equals multi-run GDP."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from privlab.audit import audit_gdp, audit_multi_run, estimate_gdp_mu, gdp_epsilon
from privlab.errors import InvalidParameterError


def _naive_mu(ins: np.ndarray, outs: np.ndarray, min_rate: float) -> float:
    n_in, n_out = len(ins), len(outs)
    vals, all_vals = [], []
    for t in [*sorted(set(ins) | set(outs)), np.inf]:
        fpr = min(max(sum(s >= t for s in outs) / n_out, 0.5 / n_out), 1 - 0.5 / n_out)
        tpr = min(max(sum(s >= t for s in ins) / n_in, 0.5 / n_in), 1 - 0.5 / n_in)
        mu = scipy.stats.norm.ppf(tpr) - scipy.stats.norm.ppf(fpr)
        all_vals.append(mu)
        if min_rate <= fpr <= 1 - min_rate and min_rate <= tpr <= 1 - min_rate:
            vals.append(mu)
    return max(float(np.median(vals if vals else all_vals)), 0.0)


@pytest.mark.parametrize("seed", range(6))
def test_estimate_matches_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ins, outs = np.round(rng.normal(0.8, 1, 70), 1), np.round(rng.normal(0, 1, 50), 1)
    assert estimate_gdp_mu(ins, outs, min_rate=0.05) == pytest.approx(_naive_mu(ins, outs, 0.05), rel=1e-9)


def test_estimate_recovers_mu_on_gaussian_scores() -> None:
    rng = np.random.default_rng(0)
    assert estimate_gdp_mu(rng.normal(1.2, 1, 20_000), rng.normal(0, 1, 20_000)) == pytest.approx(1.2, abs=0.05)


def test_conservative_is_multi_run_gdp_and_estimate_is_not_a_bound() -> None:
    rng = np.random.default_rng(1)
    ins, outs = rng.normal(1, 1, 500), rng.normal(0, 1, 500)
    cons = audit_gdp(ins, outs, delta=1e-5, seed=3, claimed_epsilon=0.1)
    ref = audit_multi_run(ins, outs, delta=1e-5, seed=3, bound="gdp")
    assert cons.method == "gdp_roc" and cons.epsilon_lower_bound == ref.epsilon_lower_bound
    est = audit_gdp(ins, outs, delta=1e-5, conservative=False, claimed_epsilon=0.1)
    assert est.confidence is None and not est.violates_claim
    assert est.epsilon_lower_bound == pytest.approx(gdp_epsilon(est.details["mu_estimate"], 1e-5))


def test_invalid() -> None:
    with pytest.raises(InvalidParameterError, match="'delta' parameter of audit_gdp"):
        audit_gdp([1.0, 2.0], [0.0, 1.0], delta=0.0)
    with pytest.raises(InvalidParameterError, match="'min_rate' parameter of estimate_gdp_mu"):
        estimate_gdp_mu([1.0], [0.0], min_rate=0.5)
