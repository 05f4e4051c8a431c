"""Multi-run audit on mechanisms with a known epsilon: validity over many seeds, tightness, controls.

Validity: if the mechanism is (eps, delta)-DP, ``P[lb > eps] <= alpha``; over ``N_SEEDS`` independent
seeds the number of exceedances must be consistent with Binomial(N_SEEDS, alpha) (one-sided binomial
test at level 1e-3). Tolerances were checked on seeds 0..199; observed: randomized response eps=2,
1000 + 1000 runs: 2/200 exceedances, median lb 1.79; 5e4 + 5e4 runs: lb 1.95 (0.98 of eps).
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from privlab.audit import GaussianMechanism, RandomizedResponse, audit_multi_run

N_SEEDS = 200
ALPHA = 0.05
DELTA = 1e-5


def assert_exceedances_consistent(lbs: np.ndarray, true_eps: float, alpha: float = ALPHA) -> int:
    """The count of ``lb > true_eps`` is not significantly above ``alpha * n`` (binomial test, level 1e-3)."""
    count = int(np.sum(lbs > true_eps))
    p = float(scipy.stats.binom.sf(count - 1, lbs.size, alpha))
    assert p > 1e-3, f"{count}/{lbs.size} lower bounds exceed the true epsilon {true_eps} (p={p:.2g})"
    return count


def _lbs(mech: RandomizedResponse | GaussianMechanism, n: int, bound: str = "eps_delta",
         claimed: float | None = None, seeds: int = N_SEEDS) -> tuple[np.ndarray, np.ndarray]:
    lbs, flags = [], []
    for s in range(seeds):
        ins, outs = mech.sample(n, n, np.random.default_rng(s))
        res = audit_multi_run(ins, outs, delta=DELTA, alpha=ALPHA, seed=s, bound=bound, claimed_epsilon=claimed)
        lbs.append(res.epsilon_lower_bound)
        flags.append(res.violates_claim)
    return np.array(lbs), np.array(flags)


def test_randomized_response_valid_and_tight() -> None:
    rr = RandomizedResponse(2.0)
    lbs, _ = _lbs(rr, 1000)
    assert_exceedances_consistent(lbs, rr.epsilon_at(DELTA))
    assert np.median(lbs) > 0.8 * 2.0
    # Positive control: 10^5 trials (5e4 IN + 5e4 OUT; half of each selects the threshold).
    big, _ = _lbs(rr, 50_000, seeds=3)
    assert np.all(big >= 0.8 * 2.0) and np.all(big <= 2.0 + 0.05)


def test_randomized_response_fixed_threshold_valid() -> None:
    rr = RandomizedResponse(1.0)
    lbs = np.array([
        audit_multi_run(*rr.sample(500, 500, np.random.default_rng(s)), threshold=0.5, delta=0.0).epsilon_lower_bound
        for s in range(N_SEEDS)
    ])
    assert_exceedances_consistent(lbs, 1.0)
    assert np.median(lbs) > 0.6


def test_gaussian_eps_delta_bound_valid() -> None:
    g = GaussianMechanism.from_epsilon(2.0, DELTA)
    lbs, _ = _lbs(g, 1000)
    assert_exceedances_consistent(lbs, 2.0)


def test_gaussian_gdp_bound_valid_and_tight() -> None:
    g = GaussianMechanism.from_epsilon(2.0, DELTA)
    lbs, _ = _lbs(g, 1000, bound="gdp")
    assert_exceedances_consistent(lbs, 2.0)
    big, _ = _lbs(g, 50_000, bound="gdp", seeds=3)  # observed 1.83..1.89
    assert np.all(big >= 0.8 * 2.0) and np.all(big <= 2.0)


def test_negative_controls_randomized_response() -> None:
    # Weaker privacy than claimed (true eps 3, claimed 2) is flagged; stronger (true eps 1) never is.
    _, weak = _lbs(RandomizedResponse(3.0), 1000, claimed=2.0, seeds=100)
    assert weak.mean() >= 0.9
    _, strong = _lbs(RandomizedResponse(1.0), 1000, claimed=2.0)
    assert not strong.any()


def test_negative_controls_gaussian_noise_scale() -> None:
    # The noise scale the claim needs is sigma*; 2/3 of it is flagged, 3/2 of it never is.
    claimed = GaussianMechanism.from_epsilon(2.0, DELTA)
    _, weak = _lbs(GaussianMechanism(claimed.sigma * 2 / 3), 20_000, bound="gdp", claimed=2.0, seeds=30)
    assert weak.mean() >= 0.9
    _, strong = _lbs(GaussianMechanism(claimed.sigma * 3 / 2), 20_000, bound="gdp", claimed=2.0, seeds=30)
    assert not strong.any()
