"""Scores and power of the white-box Dirac audit: the per-step likelihood ratio and the noiseless figure.

Per-step likelihood-ratio score. With the data's own contribution removed
(:func:`~privlab.audit.canaries.run_dirac_canaries`), canary i's update at step t is, for a correct
implementation, ``u_t = a b_t + s Z_t`` with ``b_t ~ Bernoulli(q)`` if the canary is IN and ``b_t = 0``
if OUT, ``a`` the clipped canary norm on its coordinate (C; C / sqrt(K) with per-layer clipping over K
tensors), ``s = sigma C`` the noise standard deviation and ``Z_t ~ N(0, 1)``. Each step is the
Poisson-subsampled Gaussian mechanism, whose likelihood ratio IN : OUT is

    L_t = (1 - q) + q exp((a u_t - a^2 / 2) / s^2),

and the score is ``sum_t log L_t`` (the Neyman-Pearson statistic of the whole transcript of that
coordinate, the iterates being released at every step). Compared with the final-minus-initial sum
``sum_t u_t`` it ignores steps where the canary was probably not sampled, and a canary left unclipped
(``u_t = A C``, A > 1) or un-noised (``u_t`` in {0, a}) stands out by orders of magnitude. Any function
of the transcript is a valid one-run score (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One
(1) Training Run", Sec. 7 white-box setting; Nasr et al. 2023, "Tight Auditing of Differentially
Private Machine Learning", for the threat model with intermediate iterates), so this one only changes power.

Noiseless power. :func:`noiseless_bound` is the lower bound the same configuration (m canaries, rate q,
T steps, grid, delta, confidence) proves against a DP-SGD with the noise removed, from the closed form:
then ``score_i`` is a strictly increasing function of ``K_i``, the number of steps in which canary i was
sampled (``K_i ~ Binomial(T, q)`` if IN, 0 if OUT; ties at K = 0 are the ones no audit can resolve).
When it does not exceed the claim, the audit cannot catch even a noiseless run: it is underpowered.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from privlab._validation import check_int, check_real
from privlab.audit.stats import audit_one_run_grid


def step_likelihood_ratio(
    updates: npt.ArrayLike, *, sample_rate: float, signal: float, noise_std: float
) -> npt.NDArray[np.float64]:
    """``sum_t log((1 - q) + q exp((a u_t - a^2/2) / s^2))`` over axis 0 of ``updates`` (T, m) -> (m,).

    ``signal`` = a (the clipped canary's per-step contribution), ``noise_std`` = s (sigma C). With
    ``noise_std == 0`` (a claim of infinite epsilon) there is no likelihood ratio and the plain sum is returned.
    """
    owner = "step_likelihood_ratio"
    q = check_real(sample_rate, "sample_rate", owner, low=0.0, high=1.0, low_open=True)
    a = check_real(signal, "signal", owner, low=0.0, low_open=True)
    s = check_real(noise_std, "noise_std", owner, low=0.0)
    u = np.asarray(updates, dtype=np.float64)
    if s == 0.0:
        return np.asarray(u.sum(0), dtype=np.float64)
    z = (a * u - 0.5 * a * a) / (s * s)
    log_out = np.log1p(-q) if q < 1.0 else -np.inf
    return np.asarray(np.logaddexp(log_out, np.log(q) + z).sum(0), dtype=np.float64)


def noiseless_bound(
    m: int,
    *,
    steps: int,
    sample_rate: float,
    grid: Sequence[tuple[int, int]],
    delta: float,
    alpha: float,
    seed: int = 0,
    draws: int = 5,
) -> float:
    """Median over ``draws`` closed-form runs of the one-run bound against a noiseless DP-SGD.

    Each draw: inclusion ~ Bernoulli(1/2), score = K ~ Binomial(T, q) if IN else 0, audited with
    :func:`~privlab.audit.stats.audit_one_run_grid` exactly as a real run (same m, grid, delta, alpha).
    Deterministic given ``seed``. A fault that leaves some noise in is harder to catch, so this is an
    upper limit on what the audit can flag, not a promise.
    """
    owner = "noiseless_bound"
    m = check_int(m, "m", owner, low=2)
    T = check_int(steps, "steps", owner, low=1)
    q = check_real(sample_rate, "sample_rate", owner, low=0.0, high=1.0, low_open=True)
    n = check_int(draws, "draws", owner, low=1)
    rng = np.random.default_rng([check_int(seed, "seed", owner, low=0), 0x90E5])
    bounds = []
    for _ in range(n):
        inc = rng.random(m) < 0.5
        k = np.where(inc, rng.binomial(T, q, m), 0).astype(np.float64)
        res = audit_one_run_grid(k, inc, grid=grid, delta=delta, alpha=alpha, seed=int(rng.integers(2**31)))
        bounds.append(res.epsilon_lower_bound)
    return float(np.median(bounds))


__all__ = ["noiseless_bound", "step_likelihood_ratio"]
