"""Train a chunk of K same-architecture models in one batched pass per step (``torch.func``).

The K models' parameters are stacked into (K, ...) tensors (``stack_module_state``); each step,
every model draws its own batch from its own IN set, giving inputs (K, B, ...), and
a ``vmap``-ed ``functional_call`` computes the K forward passes as one batched pass, and one
backward pass through it gives the K per-model gradients; the functional optimizer in
:mod:`privlab.train.optim` then updates all K models element-wise. The random numbers are those of
:func:`privlab.train.train_model` applied to each model alone (see :mod:`privlab.train.sampling`),
so both paths reach the same parameters up to floating-point reassociation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from privlab.train import optim
from privlab.train.config import TrainConfig
from privlab.train.sampling import index_stream, init_model, num_steps


def _streams(mask: np.ndarray, seeds: Sequence[int], cfg: TrainConfig) -> tuple[torch.Tensor, list[int]]:
    """(K, T, B) global example indices per model and step, and each model's own step count."""
    rows, steps = [], []
    for row, seed in zip(mask, seeds, strict=True):
        members = torch.as_tensor(np.flatnonzero(row), dtype=torch.long)
        t_k = num_steps(len(members), cfg.epochs, cfg.batch_size)
        rows.append(members[index_stream(len(members), t_k, cfg.batch_size, seed)])  # (T_k, B)
        steps.append(t_k)
    t_max = max(steps)
    padded = [torch.cat([r, r[-1:].expand(t_max - len(r), -1)]) if len(r) < t_max else r for r in rows]
    return torch.stack(padded), steps


def train_chunk(
    model_factory: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: np.ndarray,
    seeds: Sequence[int],
    cfg: TrainConfig,
    *,
    progress: bool = False,
    desc: str = "ensemble",
) -> dict[str, torch.Tensor]:
    """Stacked trained state {name: (K, ...)} of K models; model k trains on ``x[mask[k]]`` with ``seeds[k]``."""
    models = [init_model(model_factory, s) for s in seeds]
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    base.train()

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (xb,))  # (B, ...) -> (B, C)

    batched = vmap(forward)  # (K, B, ...) -> (K, B, C)
    streams, steps = _streams(mask, seeds, cfg)  # (K, T, B)
    streams = streams.transpose(0, 1).contiguous()  # (T, K, B): one contiguous block per step
    t_all = min(steps)
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    state = optim.init_state(leaves, cfg)
    names = list(leaves)
    x_flat = x.reshape(x.shape[0], -1).contiguous()  # (N, D): index_select is much cheaper than x[idx]
    for t in tqdm(range(streams.shape[0]), disable=not progress, desc=desc, leave=False):
        idx = streams[t]  # (K, B)
        xb = x_flat.index_select(0, idx.flatten()).view(*idx.shape, *x.shape[1:])  # (K, B, ...)
        yb = y.index_select(0, idx.flatten())  # (K * B,)
        logits = batched(leaves, buffers, xb)  # (K, B, C)
        # Sum over models of each model's mean loss: the models share no parameters, so the gradient
        # with respect to row k of a stacked tensor is exactly model k's own gradient.
        loss = F.cross_entropy(logits.flatten(0, 1), yb, reduction="sum") / cfg.batch_size
        grads = dict(zip(names, torch.autograd.grad(loss, [leaves[k] for k in names]), strict=True))
        active = None if t < t_all else torch.tensor([t < s for s in steps])
        optim.step(leaves, grads, state, cfg, t + 1, active)
    params = {k: v.detach() for k, v in leaves.items()}
    return {**params, **{k: v.detach() for k, v in buffers.items()}}
