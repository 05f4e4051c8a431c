"""Multi-run audit: an epsilon lower bound from a distinguishing test over many trainings.

Setting (Jagielski, Ullman & Oprea 2020, "Auditing Differentially Private Machine Learning: How
Private is Private SGD?"; Nasr et al. 2021, "Adversary Instantiation"; Nasr et al. 2023, "Tight
Auditing of Differentially Private Machine Learning"): train ``n_in`` models with a canary and
``n_out`` without; an attack gives each run a score (higher means "canary IN"). The test "guess IN
iff score >= t" has false-positive rate FPR (OUT runs guessed IN) and false-negative rate FNR.

Bound: (eps, delta)-DP implies ``FPR + e^eps FNR >= 1 - delta`` and the symmetric inequality, so
with one-sided Clopper-Pearson upper bounds FPR_hi, FNR_hi (each at level ``alpha / 2``; a union
bound makes both hold together with probability >= 1 - alpha)::

    eps_lb = max(log((1 - delta - FNR_hi) / FPR_hi), log((1 - delta - FPR_hi) / FNR_hi), 0).

Gaussian-DP variant (Nasr et al. 2023): ``mu_lb = Phi^{-1}(1 - FPR_hi) - Phi^{-1}(FNR_hi)`` and
``eps_lb = eps_mu(delta)`` by the exact conversion of Dong, Roth & Su 2019 (Cor. 2.13). It is a lower
bound on epsilon only if the mechanism's trade-off curve is Gaussian (e.g. the Gaussian mechanism,
DP-SGD in the limit); for other mechanisms (randomized response) it can exceed the true epsilon.

Threshold selection must not look at the data it is evaluated on: either a fixed ``threshold``, or
(default) a random ``selection_fraction`` of the IN and OUT runs chooses the threshold that maximises
the bound, and the remaining runs evaluate it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from privlab._validation import check_choice, check_int, check_real
from privlab.audit.stats._common import (
    FloatArray,
    as_scores,
    candidate_thresholds,
    check_alpha,
    check_delta,
    clopper_pearson_upper,
    eps_delta_bound,
    error_counts,
    gdp_epsilon,
    gdp_mu_from_rates,
)
from privlab.audit.stats.result import AuditResult
from privlab.errors import InvalidParameterError

_OWNER = "audit_multi_run"
BOUNDS = ("eps_delta", "gdp")


def bounds_per_threshold(
    in_scores: npt.ArrayLike,
    out_scores: npt.ArrayLike,
    thresholds: npt.ArrayLike,
    *,
    delta: float,
    alpha: float,
    bound: str = "eps_delta",
) -> FloatArray:
    """The bound of the test "IN iff score >= t" for each threshold, shape ``(len(thresholds),)``.

    For ``bound="eps_delta"`` the values are epsilon lower bounds; for ``bound="gdp"`` they are mu lower
    bounds (``eps_mu(delta)`` is increasing in mu, so the same threshold maximises both).
    Confidence: each of FPR_hi and FNR_hi is a Clopper-Pearson bound at level ``alpha / 2``.
    """
    ins = np.asarray(in_scores, dtype=np.float64)
    outs = np.asarray(out_scores, dtype=np.float64)
    ts = np.asarray(thresholds, dtype=np.float64)
    fp, fn = error_counts(ins, outs, ts)
    fpr_hi = clopper_pearson_upper(fp, outs.size, alpha / 2.0)
    fnr_hi = clopper_pearson_upper(fn, ins.size, alpha / 2.0)
    if bound == "gdp":
        return np.asarray(np.maximum(np.nan_to_num(gdp_mu_from_rates(fpr_hi, fnr_hi), nan=0.0), 0.0))
    return eps_delta_bound(fpr_hi, fnr_hi, delta)


def _evaluate(
    ins: FloatArray, outs: FloatArray, threshold: float, delta: float, alpha: float, bound: str
) -> tuple[float, dict[str, Any]]:
    fp, fn = error_counts(ins, outs, np.array([threshold]))
    fpr_hi = float(clopper_pearson_upper(fp, outs.size, alpha / 2.0)[0])
    fnr_hi = float(clopper_pearson_upper(fn, ins.size, alpha / 2.0)[0])
    details: dict[str, Any] = {
        "threshold": float(threshold),
        "n_in": int(ins.size),
        "n_out": int(outs.size),
        "false_positives": int(fp[0]),
        "false_negatives": int(fn[0]),
        "fpr_upper": fpr_hi,
        "fnr_upper": fnr_hi,
    }
    # No error at all on these runs: the most this audit can prove (at most the claim: underpowered).
    fpr0 = float(clopper_pearson_upper(0, outs.size, alpha / 2.0))
    fnr0 = float(clopper_pearson_upper(0, ins.size, alpha / 2.0))
    if bound == "gdp":
        mu_lb = max(float(np.nan_to_num(gdp_mu_from_rates(fpr_hi, fnr_hi), nan=0.0)), 0.0)
        details["mu_lower_bound"] = mu_lb
        details["max_epsilon"] = gdp_epsilon(max(float(gdp_mu_from_rates(fpr0, fnr0)), 0.0), delta)
        return gdp_epsilon(mu_lb, delta), details
    details["max_epsilon"] = float(eps_delta_bound(fpr0, fnr0, delta))
    return float(eps_delta_bound(fpr_hi, fnr_hi, delta)), details


def split_runs(
    scores: FloatArray, fraction: float, rng: np.random.Generator, name: str, owner: str
) -> tuple[FloatArray, FloatArray]:
    """Randomly split runs into a selection part (``floor(n * fraction)`` runs) and an evaluation part."""
    n_sel = int(np.floor(scores.size * fraction))
    if n_sel < 1 or n_sel >= scores.size:
        raise InvalidParameterError(
            f"The '{name}' parameter of {owner} must hold enough runs to split with selection_fraction="
            f"{fraction} (at least one run on each side). Got {scores.size} run(s) instead."
        )
    perm = rng.permutation(scores.size)
    return scores[perm[:n_sel]], scores[perm[n_sel:]]


def audit_multi_run(
    in_scores: npt.ArrayLike,
    out_scores: npt.ArrayLike,
    *,
    delta: float = 0.0,
    alpha: float = 0.05,
    threshold: float | None = None,
    selection_fraction: float = 0.5,
    seed: int = 0,
    bound: str = "eps_delta",
    claimed_epsilon: float | None = None,
) -> AuditResult:
    """Epsilon lower bound at confidence ``1 - alpha`` from the scores of IN and OUT training runs.

    Args:
        in_scores: shape ``(n_in,)``, the attack score of each run trained with the canary.
        out_scores: shape ``(n_out,)``, the attack score of each run trained without it.
        delta: the delta of the (eps, delta) claim under test (must be > 0 for ``bound="gdp"``).
        alpha: one minus the confidence; split evenly between the FPR and FNR bounds.
        threshold: a threshold fixed in advance; every run then evaluates it. If None (default), a
            random ``selection_fraction`` of the runs (drawn with ``seed``) chooses it and the rest
            evaluate it.
        bound: ``"eps_delta"`` (hypothesis-testing bound, valid for any mechanism) or ``"gdp"``
            (Gaussian-DP mu bound converted to epsilon; valid only for Gaussian trade-offs).
        claimed_epsilon: recorded in the result; ``result.violates_claim`` compares against it.

    Guarantee: if the mechanism is (eps, delta)-DP, ``P[epsilon_lower_bound > eps] <= alpha``
    (for ``bound="gdp"``: if it is mu-GDP with ``eps_mu(delta) = eps``).
    """
    ins = as_scores(in_scores, "in_scores", _OWNER)
    outs = as_scores(out_scores, "out_scores", _OWNER)
    alpha = check_alpha(alpha, _OWNER)
    bound = check_choice(bound, "bound", _OWNER, BOUNDS)
    if bound == "gdp":
        delta = check_real(delta, "delta", _OWNER, low=0.0, high=1.0, low_open=True, high_open=True)
    else:
        delta = check_delta(delta, _OWNER)
    seed = check_int(seed, "seed", _OWNER, low=0)
    if claimed_epsilon is not None:
        claimed_epsilon = check_real(claimed_epsilon, "claimed_epsilon", _OWNER, low=0.0, allow_inf=True)

    if threshold is not None:
        t = check_real(threshold, "threshold", _OWNER, allow_inf=True)
        eps, details = _evaluate(ins, outs, t, delta, alpha, bound)
        details["selection"] = "fixed"
    else:
        frac = check_real(
            selection_fraction, "selection_fraction", _OWNER, low=0.0, high=1.0, low_open=True, high_open=True
        )
        rng = np.random.default_rng(seed)
        sel_in, eval_in = split_runs(ins, frac, rng, "in_scores", _OWNER)
        sel_out, eval_out = split_runs(outs, frac, rng, "out_scores", _OWNER)
        ts = candidate_thresholds(sel_in, sel_out)
        crit = bounds_per_threshold(sel_in, sel_out, ts, delta=delta, alpha=alpha, bound=bound)
        t = float(ts[int(np.argmax(crit))])
        eps, details = _evaluate(eval_in, eval_out, t, delta, alpha, bound)
        details.update(
            selection="split",
            selection_fraction=frac,
            seed=seed,
            n_in_selection=int(sel_in.size),
            n_out_selection=int(sel_out.size),
        )
    return AuditResult(
        method="multi_run" if bound == "eps_delta" else "multi_run_gdp",
        epsilon_lower_bound=float(eps),
        confidence=1.0 - alpha,
        delta=delta,
        details=details,
        claimed_epsilon=claimed_epsilon,
    )
