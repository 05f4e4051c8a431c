"""Black-box one-run audit of DP-SGD: mislabelled input canaries, scored by the final model's loss.

Protocol (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run", Sec. 6,
black-box setting; canaries as in Jagielski et al. 2020 and Nasr et al. 2023):

1. Draw m *input* canaries: examples held out from the training data, each given a uniformly
   random wrong label (:func:`privlab.data.mislabelled_canaries`), so nothing else in the data
   supports their label.
2. Include each canary independently with probability 1/2 (``included``, drawn before training)
   and append the included ones to the training set.
3. Train with the user-facing DP-SGD path: :func:`privlab.dp.make_private` (Poisson sampling,
   :class:`privlab.dp.DPOptimizer`: per-example clipping, Gaussian noise, SGD), the claim being the
   ledger's epsilon after the run. Faults flip ``DPOptimizer.add_noise_enabled`` or
   ``clipping_enabled`` (auditing switches the accountant does not see).
4. Score canary i by ``-loss(f_theta_T(x_i), y_i)`` (lower loss means the wrong label was learnt:
   guess IN) and run :func:`~privlab.audit.stats.audit_one_run_grid` with guesses on the k+ lowest
   losses only (high loss says little: an IN canary may simply not have been learnt).

The adversary sees only the final model's losses, not the parameters or the gradients, so the bound
is far below the claim even for a correct implementation (Steinke et al. report ~0.3-0.7 at eps 8
on CIFAR-10 with m = 1000): that is the price of the weaker threat model, not a defect of DP-SGD.
Confidence: ``1 - confidence`` is split evenly over the grid of guess counts (Bonferroni).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from privlab._validation import check_int, check_real
from privlab.audit.dp_training import DPTrainingAudit
from privlab.audit.spec import AuditSpec, apply_fault, check_audit_args
from privlab.audit.stats import audit_one_run_grid
from privlab.data.canaries import mislabelled_canaries
from privlab.data.dataset import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.train.fit import accuracy, fit

_OWNER = "audit_dp_training_blackbox"


def blackbox_grid(m: int) -> list[tuple[int, int]]:
    """Guess counts fixed before training: k+ in {m/100, m/20, m/10, m/4} (at least 1), k- = 0."""
    return [(k, 0) for k in sorted({max(1, m // d) for d in (100, 20, 10, 4)})]


def audit_dp_training_blackbox(
    spec: AuditSpec,
    *,
    canaries: int = 1000,
    canary_pool: ArrayDataset | None = None,
    canary_input_scale: float = 1.0,
    confidence: float = 0.95,
    grid: list[tuple[int, int]] | None = None,
    fault: str | None = None,
    progress: bool = True,
) -> DPTrainingAudit:
    """Train ``spec`` with ``make_private`` DP-SGD on its data plus the IN half of ``canaries`` mislabelled examples.

    ``canary_pool``: examples *not* in ``spec.train`` to draw the canaries from (default: the last
    ``canaries`` rows of ``spec.train`` are held out and become the pool). ``spec.sample_rate`` is the
    Poisson rate over the training set including the IN canaries. ``canary_input_scale`` multiplies the
    canaries' inputs: values > 1 make them out of distribution with large gradients, which a correct
    implementation clips (the black-box counterpart of the white-box canary norm ``A C``; it makes
    bypassed clipping visible). Other arguments as in
    :func:`~privlab.audit.dp_training.audit_dp_training`; the claimed epsilon is the ledger's.
    """
    alpha = check_audit_args(_OWNER, confidence, fault)
    m = check_int(canaries, "canaries", _OWNER, low=2)
    train = spec.train
    if canary_pool is None:
        if m >= len(train):
            raise InvalidParameterError(
                f"The 'canaries' parameter of {_OWNER} must be below the training set size ({len(train)}) when "
                f"no canary_pool is given. Got {m} instead."
            )
        canary_pool, train = train.subset(torch.arange(len(train) - m, len(train))), train.head(len(train) - m)
    elif m > len(canary_pool):
        raise InvalidParameterError(
            f"The 'canaries' parameter of {_OWNER} must be at most len(canary_pool) ({len(canary_pool)}). "
            f"Got {m} instead."
        )
    scale = check_real(canary_input_scale, "canary_input_scale", _OWNER, low=0.0, low_open=True)
    can = mislabelled_canaries(canary_pool, m, spec.seed).data
    can = ArrayDataset(can.x * scale, can.y, can.name, can.classes)
    included = torch.rand(m, generator=spec.auditor_generator()) < 0.5
    full = ArrayDataset(
        torch.cat([train.x, can.x[included]]), torch.cat([train.y, can.y[included]]), train.name, train.classes
    )
    model = spec.build_model()
    pt = spec.private_training(model, full)
    apply_fault(pt, fault)
    try:
        fit(pt.model, pt.optimizer, pt.data_loader, steps=spec.steps, progress=progress, desc="DP-SGD (black-box)")
    finally:
        pt.optimizer.detach()
    claimed = pt.epsilon()

    with torch.no_grad():
        losses = F.cross_entropy(model(can.x), can.y, reduction="none")
    scores = np.asarray(-losses.numpy(), dtype=np.float64)
    result = audit_one_run_grid(
        scores,
        included.numpy(),
        grid=grid or blackbox_grid(m),
        delta=spec.delta,
        alpha=alpha,
        seed=spec.seed,
        claimed_epsilon=claimed,
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
        threat_model="black_box",
        canaries=m,
        test="mislabelled input canaries scored by loss, one run (Steinke et al. 2023)",
        scores=scores,
        included=included.numpy(),
    )


__all__ = ["audit_dp_training_blackbox", "blackbox_grid"]
