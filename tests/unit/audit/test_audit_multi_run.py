"""Multi-run audit against a naive reference (Python loops, scipy's exact binomial CI, math.log)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from privlab.audit import AuditResult, audit_multi_run
from privlab.audit.stats import bounds_per_threshold
from privlab.errors import InvalidParameterError


def _cp_hi(k: int, n: int, alpha: float) -> float:
    return float(scipy.stats.binomtest(k, n, alternative="less").proportion_ci(1 - alpha, method="exact").high)


def _naive_bound(ins: list[float], outs: list[float], t: float, delta: float, alpha: float, bound: str) -> float:
    fp = sum(1 for s in outs if s >= t)
    fn = sum(1 for s in ins if s < t)
    a, b = _cp_hi(fp, len(outs), alpha / 2), _cp_hi(fn, len(ins), alpha / 2)
    if bound == "gdp":
        nd = scipy.stats.norm
        return max(0.0, float(nd.ppf(1 - a) - nd.ppf(b))) if b > 0 and a < 1 else 0.0
    forms = [math.log((1 - delta - b) / a) if 1 - delta - b > 0 else 0.0,
             math.log((1 - delta - a) / b) if 1 - delta - a > 0 else 0.0]
    return max(0.0, *forms)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bound", ["eps_delta", "gdp"])
def test_bounds_per_threshold_match_naive(seed: int, bound: str) -> None:
    rng = np.random.default_rng(seed)
    n_in, n_out = rng.integers(1, 40, 2)
    ins = np.round(rng.normal(1.0, 1.0, n_in), 1)  # rounding makes ties
    outs = np.round(rng.normal(0.0, 1.0, n_out), 1)
    ts = np.concatenate([np.union1d(ins, outs), [np.inf, -np.inf]])
    delta, alpha = float(rng.choice([0.0, 1e-3, 0.1])), 0.1
    got = bounds_per_threshold(ins, outs, ts, delta=delta, alpha=alpha, bound=bound)
    ref = [_naive_bound(list(ins), list(outs), float(t), delta, alpha, bound) for t in ts]
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_split_selection_matches_naive(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    ins, outs = rng.normal(1.5, 1.0, 60), rng.normal(0.0, 1.0, 50)
    res = audit_multi_run(ins, outs, delta=1e-5, alpha=0.05, seed=seed)
    # Naive: the same permutations, an exhaustive loop over thresholds on the selection half.
    split = np.random.default_rng(seed)
    p_in, p_out = split.permutation(60), split.permutation(50)
    sel_in, ev_in, sel_out, ev_out = ins[p_in[:30]], ins[p_in[30:]], outs[p_out[:25]], outs[p_out[25:]]
    cands = [*sorted(set(sel_in) | set(sel_out)), math.inf]
    best_t = max(cands, key=lambda t: _naive_bound(list(sel_in), list(sel_out), t, 1e-5, 0.05, "eps_delta"))
    assert res.details["threshold"] == best_t
    assert res.epsilon_lower_bound == pytest.approx(
        _naive_bound(list(ev_in), list(ev_out), best_t, 1e-5, 0.05, "eps_delta"), rel=1e-9)
    assert res.details["n_in"] == 30 and res.details["n_in_selection"] == 30


def test_fixed_threshold_uses_all_runs() -> None:
    ins, outs = np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0])
    res = audit_multi_run(ins, outs, threshold=0.5, delta=0.0, alpha=0.2, claimed_epsilon=0.1)
    assert isinstance(res, AuditResult) and res.method == "multi_run" and res.details["selection"] == "fixed"
    assert res.confidence == pytest.approx(0.8)
    assert res.epsilon_lower_bound == pytest.approx(_naive_bound(list(ins), list(outs), 0.5, 0.0, 0.2, "eps_delta"))
    assert res.details["false_positives"] == 1 and res.details["false_negatives"] == 1


def test_perfect_separation_is_bounded_by_sample_size() -> None:
    # n runs can prove at most about log(n / log(1/alpha)): no infinite epsilon from finite data.
    res = audit_multi_run(np.ones(1000), np.zeros(1000), threshold=0.5, alpha=0.05)
    assert 0 < res.epsilon_lower_bound < math.log(1000)


def test_gdp_bound_method_and_mu() -> None:
    rng = np.random.default_rng(3)
    res = audit_multi_run(rng.normal(1, 1, 400), rng.normal(0, 1, 400), delta=1e-5, bound="gdp")
    assert res.method == "multi_run_gdp" and res.details["mu_lower_bound"] >= 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, "'alpha' parameter of audit_multi_run"),
        ({"alpha": 1.0}, "'alpha' parameter"),
        ({"delta": 1.0}, "'delta' parameter"),
        ({"delta": 0.0, "bound": "gdp"}, "'delta' parameter"),
        ({"bound": "best"}, "'bound' parameter of audit_multi_run must be one of 'eps_delta', 'gdp'"),
        ({"selection_fraction": 1.0}, "'selection_fraction' parameter"),
        ({"seed": -1}, "'seed' parameter"),
        ({"threshold": float("nan")}, "'threshold' parameter"),
        ({"claimed_epsilon": -1.0}, "'claimed_epsilon' parameter"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        audit_multi_run([1.0, 2.0], [0.0, 0.5], **kwargs)  # type: ignore[arg-type]


def test_invalid_scores() -> None:
    with pytest.raises(InvalidParameterError, match=r"'in_scores' parameter .* non-empty"):
        audit_multi_run([], [0.0])
    with pytest.raises(InvalidParameterError, match=r"'out_scores' parameter .* finite"):
        audit_multi_run([1.0], [np.nan])
    with pytest.raises(InvalidParameterError, match=r"'in_scores' parameter .* enough runs to split"):
        audit_multi_run([1.0], [0.0, 1.0])
