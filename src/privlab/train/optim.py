"""Functional SGD and Adam over stacked (K, ...) parameters, matching ``torch.optim`` element-wise.

Both optimizers are element-wise, so one update of the stacked tensors equals K independent
updates; the in-place operations below are the ones ``torch.optim.SGD``/``Adam`` perform (single-
tensor path), so each model follows its one-by-one trajectory up to floating-point noise.
``active`` (K,) bool freezes models that have finished their own number of steps (models with
more training examples take more steps). Update rules (no dampening, no Nesterov, coupled L2
weight decay ``g <- g + wd * p``):

* SGD: ``b <- mu * b + g``; ``p <- p - lr * b`` (``b`` starts at 0, so the first ``b`` is ``g``).
* Adam (Kingma & Ba 2015): ``m <- b1 m + (1-b1) g``; ``v <- b2 v + (1-b2) g^2``;
  ``p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
"""

from __future__ import annotations

import math

import torch

from privlab.train.config import TrainConfig

Params = dict[str, torch.Tensor]


def init_state(params: Params, cfg: TrainConfig) -> dict[str, Params]:
    """Zero optimizer state shaped like ``params``."""
    if cfg.optimizer == "sgd":
        return {"buf": {k: torch.zeros_like(v) for k, v in params.items()}}
    return {
        "m": {k: torch.zeros_like(v) for k, v in params.items()},
        "v": {k: torch.zeros_like(v) for k, v in params.items()},
    }


def _update(p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], cfg: TrainConfig, t: int) -> None:
    if cfg.weight_decay:
        g = g.add(p, alpha=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        if cfg.momentum:
            g = state["buf"].mul_(cfg.momentum).add_(g)
        p.add_(g, alpha=-cfg.lr)
        return
    b1, b2 = cfg.adam_betas
    m, v = state["m"], state["v"]
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(cfg.adam_eps)
    p.addcdiv_(m, denom, value=-cfg.lr / (1 - b1**t))


@torch.no_grad()
def step(
    params: Params,
    grads: Params,
    state: dict[str, Params],
    cfg: TrainConfig,
    t: int,
    active: torch.Tensor | None = None,
) -> None:
    """One optimizer step at (1-based) step ``t``, in place on ``params`` and ``state``.

    Rows of models that are not ``active`` are left unchanged (saved and restored around the update).
    """
    frozen = None if active is None else torch.nonzero(~active).flatten()
    for name, p in params.items():
        per_param = {k: s[name] for k, s in state.items()}
        saved = None
        if frozen is not None and len(frozen):
            saved = [p.index_select(0, frozen)] + [s.index_select(0, frozen) for s in per_param.values()]
        _update(p, grads[name], per_param, cfg, t)
        if saved is not None and frozen is not None:
            for tensor, old in zip([p, *per_param.values()], saved, strict=True):
                tensor.index_copy_(0, frozen, old)
