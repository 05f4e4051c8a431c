"""One-run audit (Steinke et al. 2023) against a naive reference: direct summation of binomial terms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from privlab.audit import audit_one_run, audit_one_run_grid, one_run_epsilon, one_run_p_value
from privlab.audit.stats import count_correct_guesses
from privlab.errors import InvalidParameterError


def _pmf(k: int, n: int, q: float) -> float:
    if q >= 1.0:
        return 1.0 if k == n else 0.0
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(q) + (n - k) * math.log1p(-q)
    return math.exp(log)


def _naive_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Algorithm 3 of Steinke et al. 2023 as a loop: one pmf term at a time."""
    q = 1.0 / (1.0 + math.exp(-eps))
    beta = sum(_pmf(k, r, q) for k in range(v, r + 1))
    alpha, window = 0.0, 0.0
    for i in range(1, v + 1):
        window += _pmf(v - i, r, q)  # P[v - i <= B < v]
        alpha = max(alpha, window / i)
    return min(beta + alpha * delta * 2 * m, 1.0)


@pytest.mark.parametrize("seed", range(25))
def test_p_value_matches_direct_summation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 400))
    r = int(rng.integers(0, m + 1))
    v = int(rng.integers(0, r + 1))
    eps = float(rng.uniform(0, 4))
    delta = float(rng.choice([0.0, 1e-6, 1e-3, 0.05]))
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(_naive_p_value(m, r, v, eps, delta), rel=1e-8,
                                                                 abs=1e-14)


@pytest.mark.parametrize(("m", "r", "v", "delta"), [(1000, 1000, 700, 0.0), (1000, 200, 190, 1e-5),
                                                    (10_000, 500, 480, 1e-3), (100, 100, 50, 0.0)])
def test_epsilon_is_the_rejection_boundary(m: int, r: int, v: int, delta: float) -> None:
    eps = one_run_epsilon(m, r, v, delta=delta, alpha=0.05)
    if eps == 0.0:
        assert one_run_p_value(m, r, v, 0.0, delta) > 0.05
        return
    assert one_run_p_value(m, r, v, eps, delta) <= 0.05
    assert one_run_p_value(m, r, v, eps + 1e-5, delta) > 0.05


def test_epsilon_pure_dp_closed_form() -> None:
    # delta = 0, all guesses correct: p = q^r, so eps_lb = logit(alpha^(1/r)).
    r = 50
    q = 0.05 ** (1 / r)
    assert one_run_epsilon(r, r, r, alpha=0.05) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)


@pytest.mark.parametrize("seed", range(10))
def test_count_correct_guesses_matches_naive(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = 60
    scores, included = rng.normal(size=m), rng.random(m) < 0.5
    kp, km = int(rng.integers(0, 30)), int(rng.integers(1, 30))
    ranked = sorted(range(m), key=lambda j: -scores[j])  # continuous scores: no ties
    v_ref = sum(included[j] for j in ranked[:kp]) + sum(not included[j] for j in ranked[m - km:])
    assert count_correct_guesses(scores, included, kp, km) == (kp + km, v_ref)


def test_ties_do_not_leak_the_listing_order() -> None:
    # Canaries listed IN first, all scores equal: a stable sort would guess all 500 right.
    included = np.arange(1000) < 500
    r, v = count_correct_guesses(np.zeros(1000), included, 250, 250, seed=1)
    assert r == 500 and 200 < v < 300


def test_grid_pays_bonferroni() -> None:
    rng = np.random.default_rng(0)
    included = rng.random(2000) < 0.5
    scores = included + rng.normal(0, 0.5, 2000)
    grid = [(50, 50), (200, 200), (800, 800)]
    res = audit_one_run_grid(scores, included, grid=grid, delta=1e-5, alpha=0.05)
    assert res.details["alpha_per_guess_count"] == pytest.approx(0.05 / 3) and len(res.details["grid"]) == 3
    best = max(grid, key=lambda g: audit_one_run(scores, included, k_plus=g[0], k_minus=g[1], delta=1e-5,
                                                 alpha=0.05 / 3).epsilon_lower_bound)
    assert (res.details["k_plus"], res.details["k_minus"]) == best
    single = audit_one_run(scores, included, k_plus=best[0], k_minus=best[1], delta=1e-5, alpha=0.05)
    assert 0 < res.epsilon_lower_bound < single.epsilon_lower_bound  # paying for the choice costs something


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_plus": 3, "k_minus": 2}, r"'k_plus \+ k_minus' parameters of audit_one_run .* \[1, m=4\]"),
        ({"k_plus": 0, "k_minus": 0}, r"'k_plus \+ k_minus'"),
        ({"k_plus": -1, "k_minus": 1}, "'k_plus' parameter"),
        ({"k_plus": 1, "k_minus": 1, "alpha": 1.0}, "'alpha' parameter of audit_one_run"),
        ({"k_plus": 1, "k_minus": 1, "delta": -1e-5}, "'delta' parameter of audit_one_run"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        audit_one_run([0.1, 0.2, 0.3, 0.4], [True, False, True, False], **kwargs)  # type: ignore[arg-type]


def test_invalid_inputs() -> None:
    with pytest.raises(InvalidParameterError, match=r"'included' parameter .* shape \(3,\)"):
        audit_one_run([0.1, 0.2, 0.3], [True, False], k_plus=1, k_minus=1)
    with pytest.raises(InvalidParameterError, match="'included' parameter"):
        audit_one_run([0.1, 0.2], [2, 0], k_plus=1, k_minus=1)
    with pytest.raises(InvalidParameterError, match="'scores' parameter"):
        audit_one_run([], [], k_plus=1, k_minus=1)
    with pytest.raises(InvalidParameterError, match="'grid' parameter of audit_one_run_grid"):
        audit_one_run_grid([0.1, 0.2], [True, False], grid=[])
    with pytest.raises(InvalidParameterError, match="'v' parameter of one_run_p_value"):
        one_run_p_value(10, 5, 6, 1.0, 0.0)


@pytest.mark.parametrize(("m", "r", "v", "eps"), [(5000, 3000, 2000, 0.5), (5000, 3000, 2600, 1.5),
                                                  (20_000, 4000, 1500, 0.0), (20_000, 4000, 3990, 4.0)])
def test_p_value_matches_direct_summation_large(m: int, r: int, v: int, eps: float) -> None:
    # Large v exercises the early stop of the max over i (window(i) / i <= 1 / i).
    assert one_run_p_value(m, r, v, eps, 1e-4) == pytest.approx(_naive_p_value(m, r, v, eps, 1e-4), rel=1e-7)


def test_epsilon_nondecreasing_in_correct_guesses() -> None:
    eps = [one_run_epsilon(2000, 400, v, delta=1e-5, alpha=0.05) for v in range(200, 401, 20)]
    assert all(a <= b + 1e-6 for a, b in itertools.pairwise(eps)) and eps[0] == 0.0 and eps[-1] > 2.0


def test_a_malformed_grid_pair_is_named() -> None:
    with pytest.raises(InvalidParameterError, match=r"'grid' parameter of audit_one_run_grid must hold .* Got \(1,\)"):
        audit_one_run_grid([0.1, 0.2, 0.3, 0.4], [True, False, True, False], grid=[(1, 1), (1,)])
