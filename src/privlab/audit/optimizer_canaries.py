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

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from privlab._validation import check_choice, check_int, check_real
from privlab.audit.dp_training import DPTrainingAudit, default_grid
from privlab.audit.stats import audit_one_run_grid
from privlab.data.dataset import ArrayDataset
from privlab.errors import InvalidParameterError

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
    model_factory: Callable[[], nn.Module],
    train: ArrayDataset,
    *,
    batch_size: int,
    epochs: int,
    delta: float = 1e-5,
    target_epsilon: float | None = None,
    noise_multiplier: float | None = None,
    max_grad_norm: float = 1.0,
    clipping: str = "flat",
    lr: float = 0.5,
    canaries: int = 1000,
    canary_scale: float = 100.0,
    confidence: float = 0.95,
    grid: list[tuple[int, int]] | None = None,
    fault: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> DPTrainingAudit:
    """Train ``model_factory()`` with ``make_private`` on ``train`` plus probe canaries, and audit it.

    ``fault`` in {None, "no_noise", "no_clipping"} flips the optimizer's fault-injection flags (the
    accountant is not told): a sound audit must then report a bound above the claim.
    """
    from privlab.dp import make_private

    owner = "audit_dp_optimizer"
    check_int(batch_size, "batch_size", owner, low=1)
    check_int(epochs, "epochs", owner, low=1)
    m = check_int(canaries, "canaries", owner, low=2)
    scale = check_real(canary_scale, "canary_scale", owner, low=0.0, low_open=True)
    conf = check_real(confidence, "confidence", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    if fault is not None:
        check_choice(fault, "fault", owner, ("no_noise", "no_clipping"))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
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

    model = ProbeWrapper(model_factory(), tuple(train.x.shape[1:]), K, m)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    loader = DataLoader(TensorDataset(xs, ys), batch_size=batch_size)
    pt = make_private(
        model,
        opt,
        loader,
        target_epsilon=target_epsilon,
        noise_multiplier=noise_multiplier,
        delta=delta,
        epochs=epochs,
        max_grad_norm=max_grad_norm,
        clipping=clipping,
        seed=seed,
    )
    if fault == "no_noise":
        pt.optimizer.add_noise_enabled = False
    elif fault == "no_clipping":
        pt.optimizer.clipping_enabled = False
    crit = nn.CrossEntropyLoss()
    for _ in tqdm(range(epochs), desc="DP-SGD with probe canaries", disable=not progress, leave=False):
        for x, y in pt.data_loader:
            pt.optimizer.zero_grad()
            crit(pt.model(x), y).backward()
            pt.optimizer.step()

    u = torch.nn.functional.one_hot(labels, K).float() - 1.0 / K  # (m, K)
    u = u / u.norm(dim=1, keepdim=True)
    scores = (model.probe.weight.detach().T * u).sum(1).numpy()  # (m,)
    claimed = pt.epsilon()
    if not np.isfinite(scores).all():
        raise InvalidParameterError(
            f"The 'lr' parameter of {owner} made training diverge (non-finite canary scores). Got {lr!r} instead."
        )
    result = audit_one_run_grid(
        scores,
        included.numpy(),
        grid=grid or default_grid(m),
        delta=delta,
        alpha=1.0 - conf,
        seed=seed,
        claimed_epsilon=claimed,
    )
    return DPTrainingAudit(
        claimed,
        delta,
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
