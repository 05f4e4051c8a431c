"""Minibatch streams and one optimiser step on a user-given objective, shared by the iterative methods.

Batches are the same seeded permutation streams :func:`privlab.train.train_model` uses
(:func:`privlab.train.index_stream`), and the optimiser is privlab.train's; only the objective
differs from training (ascent on the forget set, distillation, relabelling...).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from privlab.data import ArrayDataset
from privlab.train import index_stream, num_steps
from privlab.train.loop import make_optimizer
from privlab.unlearn.base import UnlearnConfig


class Batches:
    """An endless-enough stream of seeded minibatches of ``data`` (``steps`` of them)."""

    def __init__(self, data: ArrayDataset, steps: int, batch_size: int, seed: int) -> None:
        self.data = data
        self.size = min(batch_size, len(data))
        self.idx = index_stream(len(data), max(steps, 1), self.size, seed)

    def __getitem__(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.idx[t]
        return self.data.x[i], self.data.y[i]


def steps_for(n: int, epochs: float, batch_size: int) -> int:
    """``ceil(epochs * n / min(batch_size, n))``: steps of an ``epochs``-pass over ``n`` examples."""
    return num_steps(n, epochs, min(batch_size, n))


def sub_seed(seed: int, stream: int) -> int:
    """An independent seed for the method's ``stream``-th random stream."""
    return int(np.random.SeedSequence([seed, 7919, stream]).generate_state(1, dtype=np.uint32)[0])


def optimizer_for(model: nn.Module, config: UnlearnConfig) -> torch.optim.Optimizer:
    return make_optimizer([p for p in model.parameters() if p.requires_grad], config.step_config())


def step(opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]) -> float:
    """One step: zero grads, ``loss_fn().backward()``, ``opt.step()``; returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    opt.step()
    return float(loss.detach())
