"""Functional SGD and Adam over stacked (K, ...) parameters, matching ``torch.optim`` element-wise.

Both optimizers are element-wise, so one update of the stacked tensors equals K independent
updates; the operations below are the ones ``torch.optim.SGD``/``Adam`` perform (single-tensor
path), batched over tensors with ``torch._foreach_*``, so each model follows its one-by-one
trajectory up to floating-point noise. ``active`` (K,) bool freezes models that have finished
their own number of steps (models with more training examples take more steps). Update rules (no
dampening, no Nesterov, coupled L2 weight decay ``g <- g + wd * p``, added to a copy of the
gradients, which may be a kernel's reused buffers):

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


def folds_momentum(cfg: TrainConfig) -> bool:
    """Whether a gradient kernel may accumulate ``b <- mu b + g`` itself (SGD with momentum; see :func:`step`)."""
    return cfg.optimizer == "sgd" and cfg.momentum > 0


def _update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: dict[str, list[torch.Tensor]],
    cfg: TrainConfig,
    t: int,
    accumulated: bool,
) -> None:
    """The update of all stacked tensors at once (``torch._foreach_*``: one operator call per step of the rule)."""
    if accumulated:  # state["buf"] already holds mu * b + g; add the decay term and step.
        if cfg.weight_decay:
            torch._foreach_add_(state["buf"], params, alpha=cfg.weight_decay)
        torch._foreach_add_(params, state["buf"], alpha=-cfg.lr)
        return
    if cfg.weight_decay:
        grads = list(torch._foreach_add(grads, params, alpha=cfg.weight_decay))
    if cfg.optimizer == "sgd":
        if cfg.momentum:
            buf = state["buf"]
            torch._foreach_mul_(buf, cfg.momentum)
            torch._foreach_add_(buf, grads)
            grads = buf
        torch._foreach_add_(params, grads, alpha=-cfg.lr)
        return
    b1, b2 = cfg.adam_betas
    m, v = state["m"], state["v"]
    torch._foreach_lerp_(m, grads, 1 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, math.sqrt(1 - b2**t))
    torch._foreach_add_(denom, cfg.adam_eps)
    torch._foreach_addcdiv_(params, m, denom, value=-cfg.lr / (1 - b1**t))


@torch.no_grad()
def step(
    params: Params,
    grads: Params,
    state: dict[str, Params],
    cfg: TrainConfig,
    t: int,
    active: torch.Tensor | None = None,
    accumulated: bool = False,
) -> None:
    """One optimizer step at (1-based) step ``t``, in place on ``params`` and ``state``.

    Rows of models that are not ``active`` are left unchanged (saved and restored around the update).
    ``accumulated=True`` (only where :func:`folds_momentum`, and with every model active): the
    gradient kernel has already set ``state["buf"] <- mu * buf + g`` (``grads`` is ignored).
    """
    if accumulated and (not folds_momentum(cfg) or active is not None):
        raise ValueError("accumulated=True needs SGD with momentum and no frozen models")
    names = list(params)
    tensors = [params[k] for k in names]
    per_state = {key: [s[k] for k in names] for key, s in state.items()}
    frozen = None if active is None else torch.nonzero(~active).flatten()
    saved = []
    if frozen is not None and len(frozen):
        saved = [(x, x.index_select(0, frozen)) for x in [*tensors, *(x for xs in per_state.values() for x in xs)]]
    _update(tensors, [grads[k] for k in names], per_state, cfg, t, accumulated)
    for tensor, old in saved:
        tensor.index_copy_(0, frozen, old)  # type: ignore[arg-type]
