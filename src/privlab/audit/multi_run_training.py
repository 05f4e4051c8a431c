"""Multi-run white-box audit of DP-SGD: R real trainings, one Dirac gradient canary in half of them.

Protocol (Jagielski, Ullman & Oprea 2020; Nasr et al. 2023, "Tight Auditing of Differentially
Private Machine Learning", white-box gradient canaries):

1. Before any training, fix the canary coordinate ``c`` (a quiet coordinate of a reference model,
   :func:`~privlab.audit.canaries.quiet_coordinates`) and a balanced random IN/OUT assignment of the
   R runs (exactly ``R // 2`` IN).
2. Run r: fresh model (seeded), DP-SGD through :func:`~privlab.audit.canaries.train_with_dirac_canaries`
   (the same clipping and noise functions as the one-run audit and the optimizer), with the canary
   present iff run r is IN. Score ``s_r = -(theta_T - theta_0)[c]``.
3. ``audit_multi_run`` on the IN and OUT scores, twice: the assumption-free ``eps_delta`` bound
   (Clopper-Pearson on FPR and FNR) and the ``gdp`` bound ``mu_lb = Phi^-1(1 - FPR_hi) - Phi^-1(FNR_hi)``
   converted to ``eps_mu(delta)`` (Dong, Roth & Su 2019).

Why GDP fits here: on a quiet coordinate the score is ``(lr / qN)(C K + sigma C sqrt(T) Z)`` with
``K ~ Binomial(T, q)`` (IN) or 0 (OUT). With full batches (q = 1) this is *exactly* the Gaussian
mechanism with ``mu = sqrt(T) / sigma``, whose trade-off curve is mu-GDP, and the final parameters
carry all the information of the transcript about the canary: the audit can be tight. For q < 1 the
final-iterate score is a Binomial mixture and the audit is loose by construction (the accountant
bounds the whole transcript).

Thresholds and confidence. ``eps_delta``: half the runs choose the threshold (it lives in a tail),
the other half evaluate it. ``gdp`` (default ``gdp_threshold="midpoint"``): the threshold is fixed
before training at half the expected IN shift, ``t = (lr / qN) * q T C / 2`` (for two Gaussians of equal
variance every threshold estimates the same mu, and the middle one has the tightest interval), so
all runs evaluate it; ``"split"`` selects it like ``eps_delta`` (noisier: the selection half can pick a
tail threshold where FNR ~ 1). Each bound is at ``confidence`` on its own (two statements; together
they hold with probability ``>= 1 - 2 alpha``).
Cost: R x T DP-SGD steps; use a small model and data set (see ``benchmarks/audit``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from privlab._validation import check_choice, check_int, check_real
from privlab.audit._args import resolve_dp_sgd
from privlab.audit.canaries import quiet_coordinates, train_with_dirac_canaries
from privlab.audit.dp_training import DPTrainingAudit
from privlab.audit.stats import audit_multi_run
from privlab.data.dataset import ArrayDataset

_OWNER = "audit_dp_training_multi_run"


def multi_run_dirac_scores(
    model_factory: Callable[[], nn.Module],
    train: ArrayDataset,
    included: np.ndarray,
    *,
    sample_rate: float,
    steps: int,
    noise_multiplier: float,
    max_grad_norm: float,
    lr: float,
    canary_norm_multiplier: float,
    fault: str | None,
    seed: int,
    progress: bool = False,
) -> np.ndarray:
    """One real DP-SGD training per entry of ``included`` (shape (R,), bool); returns the (R,) scores.

    Run r initialises its model after ``torch.manual_seed(seed + 1 + r)`` and draws its batches and
    noise from a generator seeded ``(seed + 1) * 1_000_003 + r``; the canary coordinate is fixed once
    from a reference model built at ``seed``, before any inclusion is used.
    """
    torch.manual_seed(seed)
    ref = model_factory()
    coord = quiet_coordinates(ref, F.cross_entropy, train, 1, torch.Generator().manual_seed(seed))
    scores = np.empty(len(included), dtype=np.float64)
    for r in tqdm(range(len(included)), desc="multi-run DP-SGD", disable=not progress, leave=False):
        torch.manual_seed(seed + 1 + r)
        model = model_factory()
        gen = torch.Generator().manual_seed((seed + 1) * 1_000_003 + r)
        inc = torch.tensor([bool(included[r])])
        scores[r] = train_with_dirac_canaries(
            model,
            F.cross_entropy,
            train,
            coord,
            inc,
            sample_rate=sample_rate,
            steps=steps,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            lr=lr,
            canary_norm_multiplier=canary_norm_multiplier,
            fault=fault,
            generator=gen,
        )[0]
    return scores


def midpoint_threshold(lr: float, sample_rate: float, train_size: int, steps: int, max_grad_norm: float) -> float:
    """Half the expected score shift of an IN canary for a correct run: ``(lr / (q N)) * q T C / 2``."""
    return lr / (sample_rate * train_size) * sample_rate * steps * max_grad_norm / 2.0


def audit_dp_training_multi_run(
    model_factory: Callable[[], nn.Module],
    train: ArrayDataset,
    *,
    runs: int,
    sample_rate: float,
    steps: int,
    delta: float = 1e-5,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    max_grad_norm: float = 1.0,
    lr: float = 0.5,
    canary_norm_multiplier: float = 10.0,
    confidence: float = 0.95,
    accountant: str = "pld",
    fault: str | None = None,
    gdp_threshold: str = "midpoint",
    seed: int = 0,
    progress: bool = True,
) -> DPTrainingAudit:
    """Train ``runs`` models with DP-SGD, a white-box Dirac canary in half of them, and audit the claim.

    Returns a :class:`DPTrainingAudit` with ``audit`` the ``eps_delta`` bound (valid for any mechanism;
    ``violated`` uses it) and ``gdp_audit`` the Gaussian-DP bound, both at ``confidence``; their
    ``details`` hold the threshold and error counts. Arguments as in :func:`audit_dp_training`;
    ``fault`` breaks the implementation without telling the accountant.
    """
    spec = resolve_dp_sgd(
        _OWNER,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        max_grad_norm=max_grad_norm,
        lr=lr,
        confidence=confidence,
        accountant=accountant,
        fault=fault,
    )
    R = check_int(runs, "runs", _OWNER, low=8)
    check_choice(gdp_threshold, "gdp_threshold", _OWNER, ("midpoint", "split"))
    A = check_real(canary_norm_multiplier, "canary_norm_multiplier", _OWNER, low=1.0)
    check_int(seed, "seed", _OWNER, low=0)
    rng = np.random.default_rng(seed)
    included = np.zeros(R, dtype=bool)
    included[rng.permutation(R)[: R // 2]] = True  # balanced, drawn before any training
    scores = multi_run_dirac_scores(
        model_factory,
        train,
        included,
        sample_rate=spec.sample_rate,
        steps=spec.steps,
        noise_multiplier=spec.noise_multiplier,
        max_grad_norm=spec.max_grad_norm,
        lr=spec.lr,
        canary_norm_multiplier=A,
        fault=fault,
        seed=seed,
        progress=progress,
    )
    ins, outs = scores[included], scores[~included]
    audit = functools.partial(
        audit_multi_run, ins, outs, delta=spec.delta, alpha=spec.alpha, seed=seed, claimed_epsilon=spec.claimed_epsilon
    )
    t = midpoint_threshold(spec.lr, spec.sample_rate, len(train), spec.steps, spec.max_grad_norm)
    eps_delta = audit(bound="eps_delta")
    gdp = audit(bound="gdp", threshold=t if gdp_threshold == "midpoint" else None)
    return DPTrainingAudit(
        spec.claimed_epsilon,
        spec.delta,
        spec.noise_multiplier,
        spec.sample_rate,
        spec.steps,
        eps_delta,
        fault,
        threat_model="white_box",
        runs=R,
        canaries=1,
        gdp_audit=gdp,
        test="Dirac gradient canary, multi-run (Nasr et al. 2023), eps_delta and GDP bounds",
        scores=scores,
        included=included,
    )


__all__ = ["audit_dp_training_multi_run", "midpoint_threshold", "multi_run_dirac_scores"]
