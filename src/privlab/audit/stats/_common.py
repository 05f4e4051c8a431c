"""Shared mathematics of the audits: Clopper-Pearson bounds, the Gaussian-DP conversion, score checks.

Pure numpy/scipy (no torch): this is the safety-critical part of the audit and must stay easy to test.

References:
    Clopper & Pearson 1934, "The use of confidence or fiducial limits illustrated in the case of the
    binomial", Biometrika 26(4).
    Dong, Roth & Su 2019/2022, "Gaussian Differential Privacy", JRSS-B, Corollary 2.13.
    Balle & Wang 2018, "Improving the Gaussian Mechanism for Differential Privacy: Analytical
    Calibration and Optimal Denoising", ICML, Theorem 8.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.optimize
import scipy.special
import scipy.stats

from privlab._validation import check_real
from privlab.errors import InvalidParameterError

FloatArray = npt.NDArray[np.float64]


def check_alpha(alpha: Any, owner: str) -> float:
    """``alpha`` (one minus the confidence) must lie in the open interval (0, 1)."""
    return check_real(alpha, "alpha", owner, low=0.0, high=1.0, low_open=True, high_open=True)


def check_delta(delta: Any, owner: str) -> float:
    """``delta`` of the (epsilon, delta) claim being audited must lie in [0, 1)."""
    return check_real(delta, "delta", owner, low=0.0, high=1.0, high_open=True)


def as_scores(scores: Any, name: str, owner: str) -> FloatArray:
    """Return ``scores`` as a non-empty, finite, one-dimensional float64 array."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be a 1-D array of real scores. "
            f"Got {type(scores).__name__} instead."
        ) from None
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must be a non-empty 1-D array of scores. "
            f"Got an array of shape {arr.shape} instead."
        )
    if not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must contain only finite scores. "
            f"Got {int(np.sum(~np.isfinite(arr)))} non-finite value(s) instead."
        )
    return arr


def clopper_pearson_upper(k: npt.ArrayLike, n: int, alpha: float) -> FloatArray:
    """One-sided upper Clopper-Pearson bound ``p_hi`` with ``P[p <= p_hi] >= 1 - alpha``.

    ``p_hi`` is the ``1 - alpha`` quantile of ``Beta(k + 1, n - k)``, and 1 when ``k == n``
    (Clopper & Pearson 1934). Vectorised over ``k``.
    """
    k_arr = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hi = scipy.stats.beta.ppf(1.0 - alpha, k_arr + 1.0, np.maximum(n - k_arr, 1e-300))
    return np.asarray(np.where(k_arr >= n, 1.0, hi), dtype=np.float64)


def clopper_pearson_lower(k: npt.ArrayLike, n: int, alpha: float) -> FloatArray:
    """One-sided lower Clopper-Pearson bound: the ``alpha`` quantile of ``Beta(k, n - k + 1)``, 0 if ``k == 0``."""
    k_arr = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lo = scipy.stats.beta.ppf(alpha, np.maximum(k_arr, 1e-300), n - k_arr + 1.0)
    return np.asarray(np.where(k_arr <= 0, 0.0, lo), dtype=np.float64)


def gdp_mu_from_rates(fpr: npt.ArrayLike, fnr: npt.ArrayLike) -> FloatArray:
    """``mu = Phi^{-1}(1 - FPR) - Phi^{-1}(FNR)``: the smallest mu whose Gaussian trade-off curve
    ``f_mu(x) = Phi(Phi^{-1}(1 - x) - mu)`` lies below the point (FPR, FNR) (Dong, Roth & Su 2019, eq. 2.5).

    Decreasing in both rates, so upper confidence bounds on FPR and FNR give a lower bound on mu.
    """
    fpr_a = np.asarray(fpr, dtype=np.float64)
    fnr_a = np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = scipy.special.ndtri(1.0 - fpr_a) - scipy.special.ndtri(fnr_a)
    return np.asarray(mu, dtype=np.float64)


def gdp_delta(epsilon: float, mu: float) -> float:
    """``delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)`` for a mu-GDP mechanism.

    Dong, Roth & Su 2019, Corollary 2.13; the same curve as the analytic Gaussian mechanism with
    ``mu = sensitivity / sigma`` (Balle & Wang 2018, Theorem 8). The second term is evaluated in log
    space so that large ``eps`` does not overflow.
    """
    if mu <= 0.0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    a = scipy.special.log_ndtr(-epsilon / mu + mu / 2.0)
    b = epsilon + scipy.special.log_ndtr(-epsilon / mu - mu / 2.0)
    if b >= a:  # only by rounding: the true difference is >= 0
        return 0.0
    return float(math.exp(a) * -math.expm1(b - a))


def gdp_epsilon(mu: float, delta: float) -> float:
    """Smallest ``eps >= 0`` with ``gdp_delta(eps, mu) <= delta``: the epsilon of a mu-GDP mechanism at ``delta``.

    ``gdp_delta`` is decreasing in eps, so the root is found by bracketing and Brent's method
    (absolute tolerance 1e-10).
    """
    if not mu > 0.0:
        return 0.0
    if delta <= 0.0 or math.isinf(mu):
        return math.inf
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = max(1.0, mu * mu)
    while gdp_delta(hi, mu) > delta:
        hi *= 2.0
    return float(scipy.optimize.brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-10, rtol=1e-12))


def eps_delta_bound(fpr_hi: npt.ArrayLike, fnr_hi: npt.ArrayLike, delta: float) -> FloatArray:
    """Epsilon lower bound from upper bounds on a test's error rates (Kairouz et al. 2015, Thm 2.1).

    (eps, delta)-DP implies ``FPR + e^eps FNR >= 1 - delta`` and ``FNR + e^eps FPR >= 1 - delta``, so
    ``eps >= max(log((1 - delta - FNR)/FPR), log((1 - delta - FPR)/FNR))``; the bound is decreasing
    in both rates, so it remains valid with their upper confidence bounds. Clipped below at 0.
    """
    fpr_a = np.asarray(fpr_hi, dtype=np.float64)
    fnr_a = np.asarray(fnr_hi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        b1 = np.log(np.maximum(1.0 - delta - fnr_a, 0.0)) - np.log(fpr_a)
        b2 = np.log(np.maximum(1.0 - delta - fpr_a, 0.0)) - np.log(fnr_a)
    out = np.fmax(b1, b2)
    return np.asarray(np.where(np.isnan(out), 0.0, np.maximum(out, 0.0)), dtype=np.float64)


def error_counts(
    in_scores: FloatArray, out_scores: FloatArray, thresholds: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """False-positive and false-negative counts of the test "guess IN iff score >= t" at each threshold.

    ``fp[j] = #{out >= t_j}``, ``fn[j] = #{in < t_j}``; O((n + T) log n) by sorting.
    """
    fn = np.searchsorted(np.sort(in_scores), thresholds, side="left")
    fp = out_scores.size - np.searchsorted(np.sort(out_scores), thresholds, side="left")
    return fp.astype(np.float64), fn.astype(np.float64)


def candidate_thresholds(in_scores: FloatArray, out_scores: FloatArray) -> FloatArray:
    """Every threshold at which the test changes: the distinct scores, plus +inf (guess OUT always)."""
    return np.concatenate([np.union1d(in_scores, out_scores), [np.inf]])
