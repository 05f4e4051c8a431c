"""Gradient inversion: reconstruct a client's input from the update it sent (FedSGD / FedAvg).

Two attacks from the literature, both optimising a dummy input ``x'`` so that the gradient it
induces matches the observed one ``g``:

* ``"dlg"``, Deep Leakage from Gradients (Zhu, Liu & Han 2019): minimise the squared distance
  ``sum_l ||grad_l(x', y) - g_l||^2`` with L-BFGS;
* ``"ig"``, Inverting Gradients (Geiping, Bauermeister, Droege & Moeller 2020): minimise the cosine
  distance ``1 - <grad(x', y), g> / (||grad(x', y)|| ||g||)`` over all parameters plus
  ``tv_weight * TV(x')`` (anisotropic total variation), with signed-gradient Adam, a step decay at
  3/8, 5/8 and 7/8 of the run, and ``x'`` projected onto the pixel box [0, 1].

The label is recovered first from the last layer's bias gradient (iDLG, Zhao, Mopuri & Bilen 2020):
for one example under cross-entropy the bias gradient is ``softmax(z) - onehot(y)``, negative only
at the true class. For a FedAvg update (several local steps) the weight change ``w0 - w1`` is used
as the gradient (the cosine loss is scale-invariant), which is exact for one local step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from privlab._validation import check_choice, check_int, check_real
from privlab.errors import InvalidParameterError

METHODS = ("dlg", "ig")


@dataclass(frozen=True)
class InversionConfig:
    """How to invert: ``method`` ("dlg" or "ig"), optimiser ``steps`` and ``lr``, IG's ``tv_weight``."""

    method: str = "ig"
    steps: int = 400
    lr: float = 0.1
    tv_weight: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice(self.method, "method", "InversionConfig", METHODS)
        check_int(self.steps, "steps", "InversionConfig", low=1)
        check_real(self.lr, "lr", "InversionConfig", low=0.0, low_open=True)
        check_real(self.tv_weight, "tv_weight", "InversionConfig", low=0.0)
        check_int(self.seed, "seed", "InversionConfig", low=0)


def model_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """The FedSGD update of one client: the gradient of mean cross-entropy on ``(x, y)``, per parameter."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(x), y)
    return [g.detach() for g in torch.autograd.grad(loss, params)]


def infer_label(model: nn.Module, grads: Sequence[torch.Tensor]) -> int:
    """iDLG label of a batch-1 update: the index of the most negative last-layer bias gradient."""
    params = [p for p in model.parameters() if p.requires_grad]
    _check_grads(params, grads)
    last_bias = next((i for i in range(len(params) - 1, -1, -1) if params[i].ndim == 1), None)
    if last_bias is None:
        raise InvalidParameterError(
            "The 'model' parameter of infer_label must end in a layer with a bias (iDLG reads its gradient). "
            "Got a model without 1-D parameters instead."
        )
    return int(torch.argmin(grads[last_bias]).item())


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of a (B, C, H, W) image: mean |x[i+1,j] - x[i,j]| + mean |x[i,j+1] - x[i,j]|."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def invert_gradient(
    model: nn.Module,
    grads: Sequence[torch.Tensor],
    shape: tuple[int, ...],
    cfg: InversionConfig | None = None,
    *,
    label: int | None = None,
) -> torch.Tensor:
    """Reconstruct the (1, *shape) input whose gradient under ``model`` best matches ``grads``.

    ``label`` defaults to :func:`infer_label`. Returns the reconstruction clamped to [0, 1].
    """
    cfg = cfg or InversionConfig()
    params = [p for p in model.parameters() if p.requires_grad]
    _check_grads(params, grads)
    target = [g.detach() for g in grads]
    y = torch.tensor([infer_label(model, target) if label is None else int(label)])
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.rand((1, *shape), generator=gen).requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        if cfg.method == "dlg":
            _run_dlg(model, params, target, x, y, cfg)
        else:
            _run_ig(model, params, target, x, y, cfg)
    finally:
        model.train(was_training)
    return x.detach().clamp(0.0, 1.0)


def _dummy_grads(
    model: nn.Module, params: list[nn.Parameter], x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    loss = F.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, params, create_graph=True)


def _run_dlg(
    model: nn.Module, params: list[nn.Parameter], target: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
    cfg: InversionConfig,
) -> None:
    opt = torch.optim.LBFGS([x], lr=cfg.lr, max_iter=20, history_size=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        dummy = _dummy_grads(model, params, x, y)
        loss = torch.stack([((d - t) ** 2).sum() for d, t in zip(dummy, target, strict=True)]).sum()
        loss.backward()
        return loss

    for _ in range(max(1, cfg.steps // 20)):
        opt.step(closure)  # type: ignore[no-untyped-call]
        with torch.no_grad():
            x.clamp_(0.0, 1.0)


def _run_ig(
    model: nn.Module, params: list[nn.Parameter], target: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
    cfg: InversionConfig,
) -> None:
    opt = torch.optim.Adam([x], lr=cfg.lr)
    milestones = [int(cfg.steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    t_norm = torch.sqrt(sum((t * t).sum() for t in target))  # type: ignore[arg-type]
    for _ in range(cfg.steps):
        opt.zero_grad()
        dummy = _dummy_grads(model, params, x, y)
        dot = sum((d * t).sum() for d, t in zip(dummy, target, strict=True))
        d_norm = torch.sqrt(sum((d * d).sum() for d in dummy))  # type: ignore[arg-type]
        loss = 1.0 - dot / (d_norm * t_norm + 1e-12) + cfg.tv_weight * total_variation(x)
        loss.backward()
        if x.grad is not None:
            x.grad.sign_()
        opt.step()
        sched.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)


def _check_grads(params: list[nn.Parameter], grads: Sequence[torch.Tensor]) -> None:
    shapes = [tuple(p.shape) for p in params]
    got = [tuple(g.shape) for g in grads]
    if shapes != got:
        raise InvalidParameterError(
            f"The 'grads' parameter must match the model's trainable parameters {len(shapes)} shapes "
            f"{shapes[:3]}... Got {len(got)} shapes {got[:3]}... instead."
        )
