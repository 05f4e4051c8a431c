"""Audit a DP-SGD training run end to end with white-box gradient canaries.

The auditor plants m *gradient canaries* (Nasr et al. 2023, "Tight Auditing of Differentially
Private Machine Learning"; Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training
Run", Sec. 7): canary i is a Dirac gradient ``g_i = A * C * e_{c_i}`` on its own parameter
coordinate ``c_i``, with raw norm ``A * C`` (``A = canary_norm_multiplier`` > 1) so that a correct
implementation must clip it down to C. Each canary is included with probability 1/2 (one-run) and,
when included, joins each step's Poisson sample with the same rate q as real examples, entering the
mechanism *as one example's per-sample gradient*: the target's own DPOptimizer
(``make_private``, :class:`~privlab.audit.spec.AuditSpec`) clips, sums and noises it with the data.
The auditor sees every iterate (white box: DP-SGD's accounting covers the whole transcript); with
plain SGD

    theta_T - theta_0 = -(lr / (q N)) * sum_t (sum of clipped gradients_t + N(0, sigma^2 C^2 I)).

On dense data the real gradients on c_i swamp the canary in ``-(theta_T - theta_0)[c_i]`` (issue 14:
a noiseless DP-SGD passed as "consistent" on Gaussian features), so the auditor removes, step by step,
the data batch's own clipped contribution, computed from theta_t and the batch
(:func:`~privlab.audit.canaries.run_dirac_canaries`). What remains on c_i at step t is exactly the
Poisson-subsampled Gaussian mechanism the accountant analyses, ``C b_t + sigma C Z_t``, on any data;
the default score is its per-step likelihood ratio (:mod:`privlab.audit.dirac_scores`).

Guesses: IN for the ``k_plus`` highest scores, OUT for the ``k_minus`` lowest, chosen from a small
grid fixed in advance with a Bonferroni split of the confidence (``audit_one_run_grid``).
``fault`` switches off noise or clipping *without telling the accountant*: the audit must then
report a lower bound above the claimed epsilon (tests check it does, on dense tabular, image and
text data). When no run could be flagged at this canary count and confidence (the bound against a
noiseless run is at most the claim), the verdict is "underpowered", not "consistent".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F

from privlab._validation import check_choice, check_int, check_real
from privlab.audit.canaries import DiracTranscript, quiet_coordinates, run_dirac_canaries
from privlab.audit.dirac_scores import noiseless_bound, step_likelihood_ratio
from privlab.audit.spec import FAULTS, AuditSpec, check_audit_args
from privlab.audit.stats import AuditResult, audit_one_run_grid
from privlab.dp import PrivateTraining
from privlab.errors import InvalidParameterError
from privlab.train.fit import accuracy

THREAT_MODELS = ("white_box", "black_box")


@dataclasses.dataclass(frozen=True)
class DPTrainingAudit:
    """Outcome of a DP-SGD audit (:func:`audit_dp_training`, ``audit_dp_training_blackbox``,
    ``audit_dp_training_multi_run``).

    ``claimed_epsilon`` is what the accountant states for the run; ``audit`` is the empirical lower
    bound with its confidence and the test used; ``violated`` is True when the proven lower bound
    exceeds the claim, i.e. the implementation (or the accounting) is broken. ``threat_model`` is
    "white_box" (the auditor plants gradients and reads parameters) or "black_box" (it adds training
    examples and reads losses); ``runs`` is the number of trainings; ``canaries`` per training.
    ``scores`` / ``included`` (shape (m,) or (runs,), not serialised) are the raw canary scores and
    memberships, for ROC plots and checks. ``gdp_audit`` (multi-run only) is the Gaussian-DP bound
    from the same scores; it is valid only if the mechanism's trade-off curve is Gaussian, so
    ``violated`` looks at ``audit`` alone.

    Power: ``power_epsilon`` is the largest lower bound this configuration could prove against a broken
    run -- for the Dirac audit the bound against the same training with the noise removed
    (:func:`~privlab.audit.dirac_scores.noiseless_bound`), for the other one-run audits the bound with
    every guess right (``audit.details["max_epsilon"]``); ``None`` when unknown. When it does not exceed
    the claim, ``verdict`` is "underpowered", never "consistent": such an audit cannot catch the fault.
    """

    claimed_epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    audit: AuditResult
    fault: str | None
    test_accuracy: float | None = None
    threat_model: str = "white_box"
    runs: int = 1
    canaries: int | None = None
    gdp_audit: AuditResult | None = None
    test: str = "Dirac gradient canaries, one run (Steinke et al. 2023)"
    power_epsilon: float | None = None
    scores: npt.NDArray[np.float64] | None = dataclasses.field(default=None, repr=False, compare=False)
    included: npt.NDArray[np.bool_] | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def violated(self) -> bool:
        return self.audit.violates_claim

    @property
    def power(self) -> float | None:
        """``power_epsilon``, else the one-run bound with every guess right, else None."""
        if self.power_epsilon is not None:
            return self.power_epsilon
        best = self.audit.details.get("max_epsilon")
        return None if best is None else float(best)

    @property
    def underpowered(self) -> bool:
        """Not violated, and even a broken run could not have been flagged (``power <= claimed_epsilon``)."""
        p = self.power
        return not self.violated and p is not None and p <= self.claimed_epsilon

    @property
    def verdict(self) -> str:
        """ "VIOLATED" (the claim is refuted), "underpowered" (nothing could have been refuted) or "consistent"."""
        return "VIOLATED" if self.violated else "underpowered" if self.underpowered else "consistent"

    @property
    def ratio(self) -> float:
        """Audited lower bound / claimed epsilon (1 means the audit is tight)."""
        if self.claimed_epsilon <= 0 or math.isinf(self.claimed_epsilon):
            return math.nan
        return self.audit.epsilon_lower_bound / self.claimed_epsilon

    def to_dict(self) -> dict[str, Any]:
        return {
            "claimed_epsilon": self.claimed_epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "fault": self.fault,
            "test_accuracy": self.test_accuracy,
            "violated": self.violated,
            "verdict": self.verdict,
            "power_epsilon": self.power,
            "audit": self.audit.to_dict(),
            "threat_model": self.threat_model,
            "runs": self.runs,
            "canaries": self.canaries,
            "gdp_audit": None if self.gdp_audit is None else self.gdp_audit.to_dict(),
            "test": self.test,
        }


def default_grid(m: int) -> list[tuple[int, int]]:
    """Guess counts fixed before training: k+ = k- in {m/100, m/20, m/10, m/4} (at least 1)."""
    ks = sorted({max(1, m // d) for d in (100, 20, 10, 4)})
    return [(k, k) for k in ks]


SCORES = ("likelihood_ratio", "final", "raw")


def canary_scores(
    transcript: DiracTranscript, pt: PrivateTraining, clipping: str, score: str
) -> npt.NDArray[np.float64]:
    """Canary scores of ``transcript`` (``score`` one of :data:`SCORES`), shape (m,); ``pt`` gives q, sigma, C."""
    check_choice(score, "score", "canary_scores", SCORES)
    if score == "raw":
        return transcript.raw_scores
    if score == "final":
        return transcript.final_scores
    tensors = sum(1 for p in pt.model.parameters() if p.requires_grad)
    signal = pt.max_grad_norm / (math.sqrt(tensors) if clipping == "per_layer" else 1.0)
    return step_likelihood_ratio(
        transcript.updates, sample_rate=pt.sample_rate, signal=signal, noise_std=pt.noise_multiplier * pt.max_grad_norm
    )


def audit_dp_training(
    spec: AuditSpec,
    *,
    canaries: int = 1000,
    canary_norm_multiplier: float = 10.0,
    confidence: float = 0.95,
    grid: list[tuple[int, int]] | None = None,
    fault: str | None = None,
    score: str = "likelihood_ratio",
    progress: bool = True,
) -> DPTrainingAudit:
    """Train ``spec`` with DP-SGD (``make_private``'s DPOptimizer) plus ``canaries`` white-box gradient
    canaries and audit the claim.

    ``fault`` in {None, "no_noise", "no_clipping"} breaks the optimizer on purpose (the claimed
    epsilon is still the ledger's for the intended noise): a sound audit must flag it. ``score``:
    "likelihood_ratio" (default) sums the per-step likelihood ratio of each canary's update with the
    data's contribution removed (:mod:`privlab.audit.dirac_scores`); "final" is the final-minus-initial
    parameter change, data contribution removed (closed form (*) of :mod:`privlab.audit.canaries`);
    "raw" leaves the data's drift in (the score before issue 14, for comparison: on dense data the
    data swamps the canaries).
    The result's ``verdict`` is "underpowered" when even a noiseless run could not be flagged.
    """
    owner = "audit_dp_training"
    alpha = check_audit_args(owner, confidence, fault)
    m = check_int(canaries, "canaries", owner, low=2)
    A = check_real(canary_norm_multiplier, "canary_norm_multiplier", owner, low=1.0)
    check_choice(score, "score", owner, SCORES)
    gen = spec.auditor_generator()
    model = spec.build_model()
    d = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if m > d:
        raise InvalidParameterError(
            f"The 'canaries' parameter of {owner} must be at most the number of trainable parameters ({d}). "
            f"Got {m} instead."
        )
    coords = quiet_coordinates(model, F.cross_entropy, spec.train, m, gen)  # one private coordinate per canary
    included = torch.rand(m, generator=gen) < 0.5
    transcript, pt = run_dirac_canaries(
        spec,
        model,
        coords,
        included,
        canary_norm_multiplier=A,
        fault=fault,
        generator=gen,
        subtract_data=score != "raw",
        progress=progress,
    )
    scores = canary_scores(transcript, pt, spec.clipping, score)
    if not np.isfinite(scores).all():
        raise InvalidParameterError(
            f"The 'lr' parameter of {owner}'s spec made training diverge (non-finite canary scores). "
            f"Got {spec.lr!r} instead."
        )
    claimed = pt.epsilon()
    grid = grid or default_grid(m)
    result = audit_one_run_grid(
        scores, included.numpy(), grid=grid, delta=spec.delta, alpha=alpha, seed=spec.seed, claimed_epsilon=claimed
    )
    power = noiseless_bound(
        m,
        steps=pt.accountant.steps,
        sample_rate=pt.sample_rate,
        grid=grid,
        delta=spec.delta,
        alpha=alpha,
        seed=spec.seed,
    )
    return DPTrainingAudit(
        claimed,
        spec.delta,
        pt.noise_multiplier,
        pt.sample_rate,
        pt.accountant.steps,
        result,
        fault,
        None if spec.test is None else accuracy(model, spec.test),
        canaries=m,
        test=f"Dirac gradient canaries, {score} score, one run (Steinke et al. 2023)",
        power_epsilon=power,
        scores=scores,
        included=included.numpy(),
    )


def audit_summary(a: DPTrainingAudit) -> str:
    """One line for logs and the CLI."""
    verdict = a.verdict
    if a.underpowered:
        verdict += (
            f" (at most {a.power:.3f} could be proven against a broken run at this canary count and confidence,"
            f" not above the claim: add canaries or steps)"
        )
    gdp = "" if a.gdp_audit is None else f" (GDP bound {a.gdp_audit.epsilon_lower_bound:.3f})"
    return (
        f"claimed eps {a.claimed_epsilon:.3f} (delta {a.delta:g}); audited lower bound "
        f"{a.audit.epsilon_lower_bound:.3f}{gdp} at {100 * (a.audit.confidence or 0):.0f}% confidence "
        f"[{a.audit.method}, {a.threat_model}, {a.runs} run(s)] -> {verdict}"
        + (f" (fault: {a.fault})" if a.fault else "")
    )


__all__ = [
    "FAULTS",
    "SCORES",
    "THREAT_MODELS",
    "AuditSpec",
    "DPTrainingAudit",
    "audit_dp_training",
    "audit_summary",
    "canary_scores",
    "default_grid",
    "quiet_coordinates",
]
