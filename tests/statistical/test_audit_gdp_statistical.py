"""Gaussian-DP estimate from the ROC: the estimate recovers mu; the conservative bound is valid.

Observed (delta=1e-5, eps=2 Gaussian, 2000 + 2000 scores): the conservative bound exceeded the true
epsilon on 0..few of 200 seeds; the point estimate's median is within 10% of 2.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from privlab.audit import GaussianMechanism, audit_gdp

ALPHA = 0.05
DELTA = 1e-5


def test_conservative_valid_and_estimate_unbiased() -> None:
    g = GaussianMechanism.from_epsilon(2.0, DELTA)
    cons, est = [], []
    for s in range(200):
        ins, outs = g.sample(2000, 2000, np.random.default_rng(s))
        cons.append(audit_gdp(ins, outs, delta=DELTA, alpha=ALPHA, seed=s).epsilon_lower_bound)
        est.append(audit_gdp(ins, outs, delta=DELTA, conservative=False).epsilon_lower_bound)
    cons_a, est_a = np.array(cons), np.array(est)
    count = int(np.sum(cons_a > 2.0))
    assert scipy.stats.binom.sf(count - 1, 200, ALPHA) > 1e-3
    assert abs(np.median(est_a) - 2.0) < 0.2
    assert np.median(cons_a) > 0.5 * 2.0
