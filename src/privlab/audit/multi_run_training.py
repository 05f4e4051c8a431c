"""Multi-run white-box audit of DP-SGD: R real trainings, one Dirac gradient canary in half of them.

Protocol (Jagielski, Ullman & Oprea 2020; Nasr et al. 2023, "Tight Auditing of Differentially
Private Machine Learning", white-box gradient canaries):

1. Before any training, fix the canary coordinate ``c`` (a quiet coordinate of a reference model,
   :func:`~privlab.audit.canaries.quiet_coordinates`) and a balanced random IN/OUT assignment of the
   R runs (exactly ``R // 2`` IN).
2. Run r: fresh model (seeded), DP-SGD through :func:`~privlab.audit.canaries.run_dirac_canaries`
   (``make_private``'s DPOptimizer, as in the one-run audit), with the canary
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

import dataclasses
import functools

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from privlab._validation import check_choice, check_int, check_real
from privlab.accounting import epsilon
from privlab.audit.canaries import quiet_coordinates, run_dirac_canaries
from privlab.audit.dp_training import DPTrainingAudit
from privlab.audit.spec import AuditSpec, check_audit_args
from privlab.audit.stats import audit_multi_run

_OWNER = "audit_dp_training_multi_run"


def multi_run_dirac_scores(
    spec: AuditSpec,
    included: np.ndarray,
    *,
    canary_norm_multiplier: float,
    fault: str | None,
    progress: bool = False,
) -> np.ndarray:
    """One real DP-SGD training of ``spec`` per entry of ``included`` (shape (R,), bool); returns the (R,) scores.

    Run r initialises its model after ``torch.manual_seed(seed + 1 + r)`` and trains with seed
    ``(seed + 1) * 1_000_003 + r`` (batches and noise); the canary coordinate is fixed once from a
    reference model built at ``seed``, before any inclusion is used.
    """
    ref = spec.build_model()
    coord = quiet_coordinates(ref, F.cross_entropy, spec.train, 1, spec.auditor_generator())
    scores = np.empty(len(included), dtype=np.float64)
    for r in tqdm(range(len(included)), desc="multi-run DP-SGD", disable=not progress, leave=False):
        run = dataclasses.replace(spec, seed=(spec.seed + 1) * 1_000_003 + r)
        model = spec.build_model(spec.seed + 1 + r)
        inc = torch.tensor([bool(included[r])])
        transcript, _ = run_dirac_canaries(
            run,
            model,
            coord,
            inc,
            canary_norm_multiplier=canary_norm_multiplier,
            fault=fault,
            generator=run.auditor_generator(),
        )
        scores[r] = transcript.final_scores[0]
    return scores


def midpoint_threshold(lr: float, sample_rate: float, train_size: int, steps: int, max_grad_norm: float) -> float:
    """Half the expected score shift of an IN canary for a correct run: ``(lr / (q N)) * q T C / 2``."""
    return lr / (sample_rate * train_size) * sample_rate * steps * max_grad_norm / 2.0


def audit_dp_training_multi_run(
    spec: AuditSpec,
    *,
    runs: int,
    canary_norm_multiplier: float = 10.0,
    confidence: float = 0.95,
    fault: str | None = None,
    gdp_threshold: str = "midpoint",
    progress: bool = True,
) -> DPTrainingAudit:
    """Train ``runs`` models with ``spec``'s DP-SGD, a white-box Dirac canary in half of them, and audit the claim.

    Returns a :class:`DPTrainingAudit` with ``audit`` the ``eps_delta`` bound (valid for any mechanism;
    ``violated`` uses it) and ``gdp_audit`` the Gaussian-DP bound, both at ``confidence``; their
    ``details`` hold the threshold and error counts. Arguments as in :func:`audit_dp_training`;
    ``fault`` breaks the implementation without telling the accountant.
    """
    alpha = check_audit_args(_OWNER, confidence, fault)
    R = check_int(runs, "runs", _OWNER, low=8)
    check_choice(gdp_threshold, "gdp_threshold", _OWNER, ("midpoint", "split"))
    A = check_real(canary_norm_multiplier, "canary_norm_multiplier", _OWNER, low=1.0)
    rng = np.random.default_rng(spec.seed)
    included = np.zeros(R, dtype=bool)
    included[rng.permutation(R)[: R // 2]] = True  # balanced, drawn before any training
    spec = spec.calibrated()  # every run has the same sampling rate, steps and noise: one claim
    q = spec.batch_size(len(spec.train)) / len(spec.train)
    sigma = float(spec.noise_multiplier or 0.0)
    claimed = epsilon(sigma, q, spec.steps, spec.delta, spec.accountant)
    scores = multi_run_dirac_scores(spec, included, canary_norm_multiplier=A, fault=fault, progress=progress)
    ins, outs = scores[included], scores[~included]
    audit = functools.partial(
        audit_multi_run, ins, outs, delta=spec.delta, alpha=alpha, seed=spec.seed, claimed_epsilon=claimed
    )
    t = midpoint_threshold(spec.lr, q, len(spec.train), spec.steps, spec.max_grad_norm)
    eps_delta = audit(bound="eps_delta")
    gdp = audit(bound="gdp", threshold=t if gdp_threshold == "midpoint" else None)
    return DPTrainingAudit(
        claimed,
        spec.delta,
        sigma,
        q,
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
