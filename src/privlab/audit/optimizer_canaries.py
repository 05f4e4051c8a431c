"""White-box audit through the *real* DP-SGD optimizer: probe canaries that travel the user's path.

The Dirac audit (:mod:`privlab.audit.dp_training`) injects canary gradients into privlab.dp's
functional pieces; it cannot see a bug confined to :class:`~privlab.dp.DPOptimizer` (its hooks,
ghost or per-layer clipping, Poisson data loader). This audit plants canaries as *training examples*
that go through ``make_private`` exactly like data:

* the model is wrapped as ``logits = model(x) + P z`` with a probe ``P`` (K classes x m canaries,
  initialised to zero) and an extra input block ``z``; real examples have ``z = 0``, so the data
  never touches ``P`` (a "quiet" parameter, as Dirac canaries need);
* canary i is the input ``x = 0, z = scale * e_i`` with a random label ``y_i``; its per-example
  gradient on ``P`` is ``scale * (softmax - onehot(y_i))`` in column i only, and it is clipped
  together with the rest of that example's gradient by the optimizer under test;
* each canary joins the training set with probability 1/2 (Steinke, Nasr & Jagielski 2023), and is
  then Poisson-sampled like every example;
* score_i = <P_T[:, i], u_i> with ``u_i = (onehot(y_i) - 1/K) / ||.||``, the direction a training
  step on canary i moves column i (plain SGD, so P_T is minus the sum of noisy clipped updates).

Guess counts come from a grid fixed in advance with a Bonferroni split (``audit_one_run_grid``).
The canary's contribution per step is at most C (less when the rest of its gradient takes part of
the norm), so this audit is looser than the Dirac one; its point is to exercise the production path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from privlab._validation import check_int, check_real
from privlab.audit.dp_training import DPTrainingAudit, default_grid
from privlab.audit.spec import AuditSpec, apply_fault, check_audit_args
from privlab.audit.stats import audit_one_run_grid
from privlab.errors import InvalidParameterError
from privlab.train.fit import fit

TEST = "probe canaries through make_private/DPOptimizer (white box), one run (Steinke et al. 2023)"


class ProbeWrapper(nn.Module):
    """``logits = model(x) + z @ P.T`` for a flat input ``[x.flatten(), z]`` of width ``d + m``."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], num_classes: int, m: int) -> None:
        super().__init__()
        self.model = model
        self.input_shape = input_shape
        self.d = int(np.prod(input_shape))
        self.probe = nn.Linear(m, num_classes, bias=False)
        nn.init.zeros_(self.probe.weight)

    def forward(self, xz: torch.Tensor) -> torch.Tensor:
        x = xz[:, : self.d].reshape(-1, *self.input_shape)  # (B, *input_shape)
        z = xz[:, self.d :]  # (B, m)
        out: torch.Tensor = self.model(x) + self.probe(z)
        return out


def audit_dp_optimizer(
    spec: AuditSpec,
    *,
    canaries: int = 1000,
    canary_scale: float = 100.0,
    confidence: float = 0.95,
    grid: list[tuple[int, int]] | None = None,
    fault: str | None = None,
    progress: bool = True,
) -> DPTrainingAudit:
    """Train ``spec.model_factory()`` with ``spec``'s ``make_private`` DP-SGD on its data plus probe canaries.

    ``spec.sample_rate`` is the Poisson rate over the data plus the IN canaries. ``fault`` in {None,
    "no_noise", "no_clipping"} flips the optimizer's fault-injection flags (the accountant is not
    told): a sound audit must then report a bound above the claim.
    """
    owner = "audit_dp_optimizer"
    alpha = check_audit_args(owner, confidence, fault)
    m = check_int(canaries, "canaries", owner, low=2)
    scale = check_real(canary_scale, "canary_scale", owner, low=0.0, low_open=True)
    train = spec.train
    gen = spec.auditor_generator()
    K = train.num_classes
    included = torch.rand(m, generator=gen) < 0.5
    labels = torch.randint(0, K, (m,), generator=gen)
    d = int(np.prod(train.x.shape[1:]))
    real = torch.cat([train.x.reshape(len(train), d), torch.zeros(len(train), m)], dim=1)
    idx = torch.nonzero(included).squeeze(1)
    planted = torch.zeros(len(idx), d + m)
    planted[torch.arange(len(idx)), d + idx] = scale
    xs = torch.cat([real, planted])
    ys = torch.cat([train.y, labels[idx]])

    model = ProbeWrapper(spec.build_model(), tuple(train.x.shape[1:]), K, m)
    pt = spec.private_training(model, TensorDataset(xs, ys))
    apply_fault(pt, fault)
    try:
        fit(pt.model, pt.optimizer, pt.data_loader, steps=spec.steps, progress=progress, desc="DP-SGD (probes)")
    finally:
        pt.optimizer.detach()

    u = torch.nn.functional.one_hot(labels, K).float() - 1.0 / K  # (m, K)
    u = u / u.norm(dim=1, keepdim=True)
    scores = (model.probe.weight.detach().T * u).sum(1).numpy()  # (m,)
    claimed = pt.epsilon()
    if not np.isfinite(scores).all():
        raise InvalidParameterError(
            f"The 'lr' parameter of {owner}'s spec made training diverge (non-finite canary scores). "
            f"Got {spec.lr!r} instead."
        )
    result = audit_one_run_grid(
        scores,
        included.numpy(),
        grid=grid or default_grid(m),
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
        canaries=m,
        test=TEST,
        scores=scores.astype(np.float64),
        included=included.numpy(),
    )
