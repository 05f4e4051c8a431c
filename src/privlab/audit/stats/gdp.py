"""Gaussian-DP (mu) estimate from the ROC of canary scores, reported as an epsilon at a given delta.

Model (Dong, Roth & Su 2019, "Gaussian Differential Privacy"): a mu-GDP mechanism's best test has
the trade-off curve ``FNR = Phi(Phi^{-1}(1 - FPR) - mu)``; equivalently, every point of the ROC
satisfies ``Phi^{-1}(TPR) - Phi^{-1}(FPR) <= mu``, with equality along the whole curve for the
likelihood-ratio test of N(0, 1) vs N(mu, 1). Nasr et al. 2023 ("Tight Auditing of Differentially
Private Machine Learning") use this model to turn DP-SGD canary scores into a tight epsilon.

Two products:

* :func:`estimate_gdp_mu` -- the point estimate: the median over thresholds of
  ``Phi^{-1}(TPR) - Phi^{-1}(FPR)`` on the empirical ROC (rates in ``[min_rate, 1 - min_rate]``).
  Robust to the noisy tails of the ROC, but it is an estimate, not a bound: it proves nothing.
* :func:`audit_gdp` with ``conservative=True`` -- a lower bound on mu at confidence ``1 - alpha``:
  Clopper-Pearson upper bounds on FPR and FNR (``alpha / 2`` each) at a threshold chosen on a
  held-out half of the scores, then ``mu_lb = Phi^{-1}(1 - FPR_hi) - Phi^{-1}(FNR_hi)``. This is the
  same test as :func:`privlab.audit.stats.multi_run.audit_multi_run` with ``bound="gdp"``.

Either mu is converted to ``eps_mu(delta)`` with the exact formula of Dong, Roth & Su (Cor. 2.13).
Valid as an epsilon lower bound only if the mechanism's trade-off curve is Gaussian.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.special

from privlab._validation import check_real
from privlab.audit.stats._common import as_scores, candidate_thresholds, error_counts, gdp_epsilon
from privlab.audit.stats.multi_run import audit_multi_run
from privlab.audit.stats.result import AuditResult


def estimate_gdp_mu(in_scores: npt.ArrayLike, out_scores: npt.ArrayLike, *, min_rate: float = 0.01) -> float:
    """Point estimate of mu: ``median_t [Phi^{-1}(TPR(t)) - Phi^{-1}(FPR(t))]`` over the empirical ROC.

    Rates are kept away from 0 and 1 by half a count (``TPR in [0.5/n_in, 1 - 0.5/n_in]``) so that
    every threshold gives a finite value; only thresholds with FPR and TPR in ``[min_rate, 1 - min_rate]``
    enter the median (all thresholds if none does). Clipped below at 0.
    """
    owner = "estimate_gdp_mu"
    ins = as_scores(in_scores, "in_scores", owner)
    outs = as_scores(out_scores, "out_scores", owner)
    min_rate = check_real(min_rate, "min_rate", owner, low=0.0, high=0.5, high_open=True)
    ts = candidate_thresholds(ins, outs)
    fp, fn = error_counts(ins, outs, ts)
    fpr = np.clip(fp / outs.size, 0.5 / outs.size, 1.0 - 0.5 / outs.size)
    tpr = np.clip(1.0 - fn / ins.size, 0.5 / ins.size, 1.0 - 0.5 / ins.size)
    mus = scipy.special.ndtri(tpr) - scipy.special.ndtri(fpr)
    keep = (fpr >= min_rate) & (fpr <= 1.0 - min_rate) & (tpr >= min_rate) & (tpr <= 1.0 - min_rate)
    chosen = mus[keep] if np.any(keep) else mus
    return max(float(np.median(chosen)), 0.0)


def audit_gdp(
    in_scores: npt.ArrayLike,
    out_scores: npt.ArrayLike,
    *,
    delta: float,
    alpha: float = 0.05,
    conservative: bool = True,
    selection_fraction: float = 0.5,
    seed: int = 0,
    min_rate: float = 0.01,
    claimed_epsilon: float | None = None,
) -> AuditResult:
    """Gaussian-DP audit of IN/OUT canary scores, as an epsilon at ``delta``.

    ``conservative=True`` (default): a lower bound at confidence ``1 - alpha`` (method ``"gdp_roc"``,
    ``details["mu_lower_bound"]``). ``conservative=False``: the point estimate of
    :func:`estimate_gdp_mu` (method ``"gdp_roc_estimate"``, ``confidence=None``; never ``violates_claim``).
    """
    owner = "audit_gdp"
    delta = check_real(delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    if claimed_epsilon is not None:
        claimed_epsilon = check_real(claimed_epsilon, "claimed_epsilon", owner, low=0.0, allow_inf=True)
    if conservative:
        res = audit_multi_run(
            in_scores,
            out_scores,
            delta=delta,
            alpha=alpha,
            selection_fraction=selection_fraction,
            seed=seed,
            bound="gdp",
            claimed_epsilon=claimed_epsilon,
        )
        return AuditResult("gdp_roc", res.epsilon_lower_bound, res.confidence, delta, res.details, claimed_epsilon)
    mu = estimate_gdp_mu(in_scores, out_scores, min_rate=min_rate)
    details = {
        "mu_estimate": mu,
        "min_rate": min_rate,
        "n_in": int(np.size(in_scores)),
        "n_out": int(np.size(out_scores)),
    }
    return AuditResult("gdp_roc_estimate", gdp_epsilon(mu, delta), None, delta, details, claimed_epsilon)
