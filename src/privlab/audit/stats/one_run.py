"""One-run audit (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run", NeurIPS).

Setting: ``m`` canaries, each included in the training set independently with probability 1/2 (the
audit cannot check this; the caller must randomise inclusion). After one training run the auditor
scores every canary, guesses IN for the ``k_plus`` highest scores and OUT for the ``k_minus`` lowest,
and abstains on the rest. Let ``r = k_plus + k_minus`` guesses and ``v`` correct guesses.

Bound (their Theorem 3.1 for pure DP and Proposition 5.2 / Algorithm 3 for (eps, delta)-DP): under
an (eps, delta)-DP mechanism, with ``q = e^eps / (1 + e^eps)`` and ``B ~ Binomial(r, q)``::

    P[V >= v] <= P[B >= v] + 2 m delta * max_{i = 1..v} P[v - i <= B < v] / i      (the p-value).

The epsilon lower bound at confidence ``1 - alpha`` is the largest eps whose p-value is still <= alpha:
the claim "(eps, delta)-DP" is rejected for it, hence for every smaller eps (found by bisection).

The guess counts must not be tuned on the data: fix ``(k_plus, k_minus)`` in advance
(:func:`audit_one_run`) or try a small grid with a Bonferroni split ``alpha / len(grid)``
(:func:`audit_one_run_grid`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.special
import scipy.stats

from privlab._validation import check_int, check_real
from privlab.audit.stats._common import as_scores, check_alpha, check_delta
from privlab.audit.stats.result import AuditResult
from privlab.errors import InvalidParameterError

_EPS_MAX = 100.0  # q = expit(100) rounds to 1: no finite audit can prove more.


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P-value of observing ``>= v`` correct guesses out of ``r`` under an (epsilon, delta)-DP null.

    Steinke et al. 2023, Proposition 5.2: ``P[B >= v] + 2 m delta max_i P[v-i <= B < v] / i`` with
    ``B ~ Binomial(r, expit(epsilon))``, capped at 1. Vectorised over ``i``; the differences are
    taken between survival functions so that the upper tail keeps its precision.
    """
    owner = "one_run_p_value"
    m = check_int(m, "m", owner, low=1)
    r = check_int(r, "r", owner, low=0, high=m)
    v = check_int(v, "v", owner, low=0, high=r)
    epsilon = check_real(epsilon, "epsilon", owner, low=0.0)
    delta = check_delta(delta, owner)
    q = float(scipy.special.expit(epsilon))
    beta = float(scipy.stats.binom.sf(v - 1, r, q))
    if delta == 0.0 or v == 0:
        return min(beta, 1.0)
    # window(i) = P[v - i <= B <= v - 1] <= 1, so window(i) / i <= 1 / i: once a maximum M is known, no
    # i > 1 / M can beat it. Scan a first block of a few standard deviations, then extend only if needed.
    n_first = min(v, int(8.0 * math.sqrt(r * q * (1.0 - q))) + 64)
    alpha_term = _max_window_ratio(1, n_first, v, r, q, beta)
    if n_first < v and alpha_term * (n_first + 1) < 1.0:
        i_stop = v if alpha_term * v <= 1.0 else min(v, math.ceil(1.0 / alpha_term))
        alpha_term = max(alpha_term, _max_window_ratio(n_first + 1, i_stop, v, r, q, beta))
    return min(beta + 2.0 * m * delta * alpha_term, 1.0)


def _max_window_ratio(i_lo: int, i_hi: int, v: int, r: int, q: float, beta: float) -> float:
    """``max_{i_lo <= i <= i_hi} P[v - i <= B < v] / i`` for ``B ~ Binomial(r, q)``, vectorised over ``i``."""
    if i_hi < i_lo:
        return 0.0
    i = np.arange(i_lo, i_hi + 1)
    window = scipy.stats.binom.sf(v - i - 1, r, q) - beta  # P[B >= v - i] - P[B >= v]
    return float(np.max(window / i))


def one_run_epsilon(m: int, r: int, v: int, *, delta: float = 0.0, alpha: float = 0.05, tol: float = 1e-7) -> float:
    """Largest epsilon whose (epsilon, delta) claim is rejected at level ``alpha`` by ``v`` correct of ``r`` guesses.

    Returns 0 if even epsilon = 0 is not rejected. Bisection keeps the invariant
    ``one_run_p_value(eps_lo) <= alpha``, so the returned value is always a rejected claim.
    """
    alpha = check_alpha(alpha, "one_run_epsilon")
    if one_run_p_value(m, r, v, 0.0, delta) > alpha:
        return 0.0
    lo, hi = 0.0, 1.0
    while hi < _EPS_MAX and one_run_p_value(m, r, v, hi, delta) <= alpha:
        lo, hi = hi, min(2.0 * hi, _EPS_MAX)
    if one_run_p_value(m, r, v, hi, delta) <= alpha:
        return hi
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if one_run_p_value(m, r, v, mid, delta) <= alpha:
            lo = mid
        else:
            hi = mid
    return lo


def one_run_max_epsilon(m: int, grid: Sequence[tuple[int, int]], *, delta: float = 0.0, alpha: float = 0.05) -> float:
    """The largest lower bound :func:`audit_one_run_grid` can ever report for ``m`` canaries and ``grid``:
    every guess correct (``v = r``) at each grid point, each tested at ``alpha / len(grid)``.

    If this is at most the claimed epsilon the audit cannot flag *any* implementation, however broken:
    it is underpowered, and "consistent" would say nothing.
    """
    pairs = list(grid)
    per = check_alpha(alpha, "one_run_max_epsilon") / max(len(pairs), 1)
    return max(one_run_epsilon(m, kp + km, kp + km, delta=delta, alpha=per) for kp, km in pairs)


def _as_membership(included: Any, m: int, owner: str) -> npt.NDArray[np.bool_]:
    arr = np.asarray(included)
    if arr.shape != (m,) or not np.all((arr == 0) | (arr == 1)):
        raise InvalidParameterError(
            f"The 'included' parameter of {owner} must be a boolean array of shape ({m},), one flag per canary. "
            f"Got an array of shape {arr.shape} and dtype {arr.dtype} instead."
        )
    return arr.astype(bool)


# The tie-break stream's label: its generator is seeded by SeedSequence([seed, TIEBREAK_STREAM]), never by
# ``seed`` alone, so it cannot repeat the stream of ``np.random.default_rng(seed)``, the natural generator
# for drawing the inclusion bits (whose first values below 1/2 would then order tied canaries by membership).
TIEBREAK_STREAM = 0x7E1B


def tiebreak_keys(seed: int, m: int) -> npt.NDArray[np.float64]:
    """Uniform keys ordering tied scores: from ``SeedSequence([seed, TIEBREAK_STREAM])`` (see above)."""
    return np.random.default_rng(np.random.SeedSequence([seed, TIEBREAK_STREAM])).random(m)


def count_correct_guesses(
    scores: npt.ArrayLike, included: npt.ArrayLike, k_plus: int, k_minus: int, *, seed: int = 0,
    owner: str = "count_correct_guesses",
) -> tuple[int, int]:
    """``(r, v)``: guesses made and correct guesses when guessing IN on the ``k_plus`` highest scores and
    OUT on the ``k_minus`` lowest.

    Ties in the score are broken uniformly at random (:func:`tiebreak_keys` of ``seed``) so that the order
    canaries are listed in cannot leak their membership. The bound is valid only if the tie-break is
    independent of the inclusion bits: its stream is derived from ``seed`` with a label, so it differs from
    ``np.random.default_rng(seed)`` even when the same ``seed`` drew the bits. ``owner`` names the
    function in error messages.
    """
    s = as_scores(scores, "scores", owner)
    inc = _as_membership(included, s.size, owner)
    k_plus = check_int(k_plus, "k_plus", owner, low=0, high=s.size)
    k_minus = check_int(k_minus, "k_minus", owner, low=0, high=s.size)
    if k_plus + k_minus > s.size or k_plus + k_minus == 0:
        raise InvalidParameterError(
            f"The 'k_plus + k_minus' parameters of {owner} must be an int in the range [1, m={s.size}]. "
            f"Got {k_plus} + {k_minus} = {k_plus + k_minus} instead."
        )
    tiebreak = tiebreak_keys(seed, s.size)
    order = np.lexsort((tiebreak, -s))  # highest score first
    v = int(np.sum(inc[order[:k_plus]])) + int(np.sum(~inc[order[s.size - k_minus :]]))
    return k_plus + k_minus, v


def _audit(
    scores: npt.ArrayLike,
    included: npt.ArrayLike,
    grid: Sequence[tuple[int, int]],
    delta: float,
    alpha: float,
    seed: int,
    claimed_epsilon: float | None,
    owner: str,
) -> AuditResult:
    alpha = check_alpha(alpha, owner)
    delta = check_delta(delta, owner)
    seed = check_int(seed, "seed", owner, low=0)
    if claimed_epsilon is not None:
        claimed_epsilon = check_real(claimed_epsilon, "claimed_epsilon", owner, low=0.0, allow_inf=True)
    s = as_scores(scores, "scores", owner)
    m = s.size
    per_guess_alpha = alpha / len(grid)
    rows: list[dict[str, Any]] = []
    for k_plus, k_minus in grid:
        r, v = count_correct_guesses(s, included, k_plus, k_minus, seed=seed, owner=owner)
        eps = one_run_epsilon(m, r, v, delta=delta, alpha=per_guess_alpha)
        rows.append({"k_plus": int(k_plus), "k_minus": int(k_minus), "guesses": r, "correct": v, "epsilon": eps})
    best = max(rows, key=lambda row: row["epsilon"])
    guesses = sorted({int(row["guesses"]) for row in rows})
    details: dict[str, Any] = {
        "m": m,
        "n_included": int(np.sum(_as_membership(included, m, owner))),
        "k_plus": best["k_plus"],
        "k_minus": best["k_minus"],
        "guesses": best["guesses"],
        "correct": best["correct"],
        "alpha_per_guess_count": per_guess_alpha,
        # every guess right at every grid point: no run can prove more (below the claim: underpowered)
        "max_epsilon": max(one_run_epsilon(m, g, g, delta=delta, alpha=per_guess_alpha) for g in guesses),
        "seed": seed,
    }
    if len(grid) > 1:
        details["grid"] = rows
    return AuditResult(
        method="one_run",
        epsilon_lower_bound=float(best["epsilon"]),
        confidence=1.0 - alpha,
        delta=delta,
        details=details,
        claimed_epsilon=claimed_epsilon,
    )


def audit_one_run(
    scores: npt.ArrayLike,
    included: npt.ArrayLike,
    *,
    k_plus: int,
    k_minus: int,
    delta: float = 0.0,
    alpha: float = 0.05,
    seed: int = 0,
    claimed_epsilon: float | None = None,
) -> AuditResult:
    """One-run epsilon lower bound at confidence ``1 - alpha`` with guess counts fixed in advance.

    Args:
        scores: shape ``(m,)``, one attack score per canary (higher means "included").
        included: shape ``(m,)`` booleans, each drawn independently with probability 1/2 before training.
        k_plus, k_minus: number of IN / OUT guesses (``1 <= k_plus + k_minus <= m``).
        delta: the delta of the (eps, delta) claim under test.
        seed: tie-breaking seed for equal scores.

    Guarantee: if training is (eps, delta)-DP w.r.t. the canaries, ``P[epsilon_lower_bound > eps] <= alpha``.
    """
    return _audit(scores, included, [(k_plus, k_minus)], delta, alpha, seed, claimed_epsilon, "audit_one_run")


def audit_one_run_grid(
    scores: npt.ArrayLike,
    included: npt.ArrayLike,
    *,
    grid: Sequence[tuple[int, int]],
    delta: float = 0.0,
    alpha: float = 0.05,
    seed: int = 0,
    claimed_epsilon: float | None = None,
) -> AuditResult:
    """The best one-run bound over a small ``grid`` of ``(k_plus, k_minus)``, each tested at ``alpha / len(grid)``.

    The Bonferroni split pays for taking the maximum: the union of ``len(grid)`` events of probability
    ``<= alpha / len(grid)`` has probability ``<= alpha``. Every grid point is reported in ``details["grid"]``.
    """
    owner = "audit_one_run_grid"
    pairs = list(grid)
    if not 1 <= len(pairs) <= 1000:
        raise InvalidParameterError(
            f"The 'grid' parameter of {owner} must be a sequence of 1 to 1000 (k_plus, k_minus) pairs. "
            f"Got {len(pairs)} pair(s) instead."
        )
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidParameterError(
                f"The 'grid' parameter of {owner} must hold (k_plus, k_minus) pairs of ints. Got {pair!r} instead."
            )
    return _audit(scores, included, pairs, delta, alpha, seed, claimed_epsilon, owner)


__all__ = [
    "audit_one_run",
    "audit_one_run_grid",
    "count_correct_guesses",
    "one_run_epsilon",
    "one_run_max_epsilon",
    "one_run_p_value",
]
