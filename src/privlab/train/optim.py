"""Functional SGD and Adam over stacked (K, ...) parameters, matching ``torch.optim`` element-wise.

Both optimizers are element-wise, so one update of the stacked tensors equals K independent
updates. ``active`` (K,) bool freezes models that have finished their own number of steps (models
with more training examples take more steps). Update rules, as in ``torch.optim`` (no dampening,
no Nesterov, coupled L2 weight decay ``g <- g + wd * p``):

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


def _where(active: torch.Tensor | None, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    if active is None:
        return new
    shape = (-1,) + (1,) * (new.dim() - 1)
    return torch.where(active.view(shape), new, old)


@torch.no_grad()
def step(
    params: Params,
    grads: Params,
    state: dict[str, Params],
    cfg: TrainConfig,
    t: int,
    active: torch.Tensor | None = None,
) -> Params:
    """One optimizer step at (1-based) step ``t``; returns new params and updates ``state`` in place."""
    out: Params = {}
    for name, p in params.items():
        g = grads[name]
        if cfg.weight_decay:
            g = g + cfg.weight_decay * p
        if cfg.optimizer == "sgd":
            if cfg.momentum:
                buf = cfg.momentum * state["buf"][name] + g
                state["buf"][name] = _where(active, buf, state["buf"][name])
                g = buf
            out[name] = _where(active, p - cfg.lr * g, p)
        else:
            b1, b2 = cfg.adam_betas
            m = state["m"][name].lerp(g, 1 - b1)
            v = b2 * state["v"][name] + (1 - b2) * g * g
            state["m"][name] = _where(active, m, state["m"][name])
            state["v"][name] = _where(active, v, state["v"][name])
            step_size = cfg.lr / (1 - b1**t)
            denom = v.sqrt() / math.sqrt(1 - b2**t) + cfg.adam_eps
            out[name] = _where(active, p - step_size * m / denom, p)
    return out
