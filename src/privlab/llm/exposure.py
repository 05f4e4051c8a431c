"""Exposure of a canary (Carlini et al. 2019, "The Secret Sharer", Sec. 4).

For a canary with secret ``s`` drawn uniformly from a space ``R`` of candidates, rank the
candidates by log-perplexity ``Px(r) = -log p(r | prefix)`` (lowest first). Then (Def. 4.2)::

    exposure(s) = log2 |R| - log2 rank(s)

between 0 (the secret is the least likely candidate) and ``log2 |R|`` (the most likely). When R is
too large to enumerate, exposure is estimated from a sample of candidates (Sec. 4.3, "Efficiently
Estimating Exposure"): rank(s) / |R| = Pr_{r ~ U(R)}[Px(r) <= Px(s)], so with a continuous
distribution F fitted to sampled log-perplexities (a skew-normal, the paper's choice, or a
Gaussian)::

    exposure(s) ~= -log2 F(Px(s))

clipped to ``log2 |R|`` (a fitted tail can claim a rank below 1; the result says when it was clipped).

With a reference model (one that never saw the canary), candidates are ranked by the calibrated
log-perplexity ``Px(r) - Px_ref(r)`` instead (the reference-model ratio of Carlini et al. 2021,
Sec. 6.2, applied to the candidate space): what the reference also finds likely (a round number,
a digit the corpus favours) no longer counts as memorisation. ``rank`` and the formulas are unchanged.

:func:`exposure_from_rank` and :func:`extrapolated_exposure` are the pure formulas;
:func:`canary_exposure` computes them for a digit canary on a model (exactly when ``|R|`` is at
most ``exact_limit``, else from ``n_samples`` uniform candidates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from privlab._validation import check_choice, check_int
from privlab.errors import InvalidParameterError
from privlab.llm.models import LanguageModel
from privlab.llm.scoring import continuation_logprob, digit_tree_logprob

FITS = ("skewnorm", "gaussian")


def exposure_from_rank(rank: int, space: int) -> float:
    """``log2 |R| - log2 rank`` with rank 1 for the most likely candidate (Carlini et al. 2019, Def. 4.2)."""
    check_int(space, "space", "exposure_from_rank", low=1)
    check_int(rank, "rank", "exposure_from_rank", low=1, high=space)
    return math.log2(space) - math.log2(rank)


def rank_of(secret_logppl: float, logppl: np.ndarray) -> int:
    """Rank of a secret among candidates' log-perplexities ``logppl`` (which include the secret).

    Ties count against the secret (rank = number of candidates at most as perplexing), so a
    model that cannot tell candidates apart gets rank |R| and exposure 0.
    """
    return int(np.sum(np.asarray(logppl) <= secret_logppl + 1e-9 * max(1.0, abs(secret_logppl))))


def extrapolated_exposure(
    secret_logppl: float, sample_logppl: np.ndarray, fit: str = "skewnorm", space: int | None = None
) -> float:
    """``-log2 F(Px(s))`` with F fitted to uniformly sampled candidates' log-perplexities (Sec. 4.3).

    The fitted tail can put less than 1/|R| of its mass below the secret, i.e. claim a rank under 1;
    with ``space`` = |R| the estimate is clipped to the largest possible exposure, ``log2 |R|``
    (rank 1, Def. 4.2). :func:`canary_exposure` flags when that happens.
    """
    check_choice(fit, "fit", "extrapolated_exposure", FITS)
    if space is not None:
        check_int(space, "space", "extrapolated_exposure", low=1)
    x = np.asarray(sample_logppl, dtype=np.float64)
    if x.ndim != 1 or len(x) < 10 or not np.isfinite(x).all():
        raise InvalidParameterError(
            "The 'sample_logppl' parameter of extrapolated_exposure must be a finite 1-D array of at least "
            f"10 values. Got shape {x.shape} instead."
        )
    if fit == "gaussian":
        logcdf = stats.norm.logcdf(secret_logppl, loc=x.mean(), scale=max(x.std(ddof=1), 1e-12))
    else:
        a, loc, scale = stats.skewnorm.fit(x)
        logcdf = stats.skewnorm.logcdf(secret_logppl, a, loc=loc, scale=scale)
    est = float(max(0.0, -logcdf / math.log(2)))
    return est if space is None else min(est, math.log2(space))


@dataclass(frozen=True)
class ExposureResult:
    """Exposure of one canary: ``method`` is "exact" (``rank`` over all of R) or "extrapolated".

    ``clipped`` is True when the extrapolated estimate exceeded ``max_exposure = log2 |R|`` and was
    set to it (the fitted distribution put the secret above the most likely candidate).
    """

    exposure: float
    max_exposure: float
    method: str
    secret_logppl: float
    rank: int | None
    space: int
    clipped: bool = False


def canary_exposure(
    lm: LanguageModel,
    prefix: str,
    secret: str,
    *,
    exact_limit: int = 10_000,
    n_samples: int = 2000,
    fit: str = "skewnorm",
    seed: int = 0,
    reference: LanguageModel | None = None,
) -> ExposureResult:
    """Exposure of the digit secret ``secret`` after ``prefix`` among all ``10**len(secret)`` strings.

    Exact (digit-tree enumeration, :func:`~privlab.llm.scoring.digit_tree_logprob`) when the space is
    at most ``exact_limit``; otherwise extrapolated from ``n_samples`` uniform candidates. With
    ``reference`` (same tokenizer), ``secret_logppl`` and the ranking use ``Px - Px_ref``.
    """
    if not secret.isdigit():
        raise InvalidParameterError(
            f"The 'secret' parameter of canary_exposure must be digits. Got {secret!r} instead."
        )
    tok = lm.tokenizer
    n = len(secret)
    space = 10**n
    pre = tok.encode(prefix)
    digit_ids = [tok.encode(str(d)) for d in range(10)]
    single = all(len(d) == 1 for d in digit_ids)
    models = [lm] if reference is None else [lm, reference]
    if reference is not None and (
        reference.tokenizer.encode(prefix) != pre
        or [reference.tokenizer.encode(str(d)) for d in range(10)] != digit_ids
    ):
        raise InvalidParameterError(
            "The 'reference' parameter of canary_exposure must tokenize the prefix and digits as 'lm' does "
            f"(the same tokenizer). Got {reference.name!r}, which tokenizes them differently, instead."
        )
    if space <= exact_limit and single:
        lps = [digit_tree_logprob(m, pre, [d[0] for d in digit_ids], n).numpy().astype(np.float64) for m in models]
        px = -lps[0] if reference is None else lps[1] - lps[0]
        s = float(px[int(secret)])
        r = rank_of(s, px)
        return ExposureResult(exposure_from_rank(r, space), math.log2(space), "exact", s, r, space)
    rng = np.random.default_rng(seed)
    cands = [secret] + [str(v).zfill(n) for v in rng.integers(0, space, n_samples)]
    enc = [[d for ch in c for d in digit_ids[int(ch)]] for c in cands]
    lps = [continuation_logprob(m, pre, enc).numpy().astype(np.float64) for m in models]
    px_all = -lps[0] if reference is None else lps[1] - lps[0]
    s, px = float(px_all[0]), px_all[1:]
    raw = extrapolated_exposure(s, px.astype(np.float64), fit)
    top = math.log2(space)
    return ExposureResult(min(raw, top), top, "extrapolated", s, None, space, clipped=raw > top)


def exposure_curve(results: dict[int, list[ExposureResult]]) -> dict[int, dict[str, float]]:
    """Mean, min and max exposure per repetition count (the Secret Sharer's exposure-vs-insertions plot)."""
    out = {}
    for reps, rs in sorted(results.items()):
        e = np.array([r.exposure for r in rs])
        out[reps] = {"mean": float(e.mean()), "min": float(e.min()), "max": float(e.max()), "n": len(rs)}
    return out


__all__ = [
    "FITS",
    "ExposureResult",
    "canary_exposure",
    "exposure_curve",
    "exposure_from_rank",
    "extrapolated_exposure",
    "rank_of",
]
