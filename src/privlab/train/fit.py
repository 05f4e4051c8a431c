"""The one minibatch training loop (``privlab train``, the pipeline's targets, the DP-SGD audits).

``fit`` runs a number of optimizer steps over a data loader, re-iterating it as needed. With a
:class:`~privlab.dp.DPOptimizer` a step is a *logical* batch: with virtual batches
(``physical_batch_size``) several chunks are stepped, and only the last one
(``optimizer.closes_logical_batch``) adds the noise, updates the model and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.dp.optimizer import DPOptimizer

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepHook = Callable[[int, torch.Tensor], None]


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | DPOptimizer,
    loader: Iterable[Any],
    *,
    steps: int,
    loss_fn: LossFn = F.cross_entropy,
    before_step: Callable[[int], None] | None = None,
    after_step: StepHook | None = None,
    postfix: Callable[[torch.Tensor], dict[str, str]] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> nn.Module:
    """Take ``steps`` (logical) optimizer steps on batches ``(x, y)`` of ``loader``; return ``model`` (eval mode).

    ``before_step(t)`` runs after the backward pass of the chunk that closes step t (0-based) and
    before it is stepped (the audits add canary gradients there); ``after_step(t + 1, loss)`` runs
    after it (learning-rate schedules). ``postfix(loss)`` gives figures for the progress bar, asked
    every 10 steps and at the end.
    """
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    done = 0
    model.train()
    while done < steps:
        stepped = False
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            closes = optimizer.closes_logical_batch if isinstance(optimizer, DPOptimizer) else True
            if closes and before_step is not None:
                before_step(done)
            optimizer.step()
            stepped = True
            if not closes:
                continue
            done += 1
            bar.update(1)
            if after_step is not None:
                after_step(done, loss.detach())
            if postfix is not None and progress and (done % 10 == 0 or done == steps):
                bar.set_postfix(postfix(loss.detach()))
            if done == steps:
                break
        if not stepped:
            break  # an empty loader: nothing to train on
    bar.close()
    model.eval()
    return model


def accuracy(model: nn.Module, data: ArrayDataset, batch: int = 2048) -> float:
    """Top-1 accuracy of ``model`` on ``data``, in eval mode and batches of ``batch`` rows."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(data), batch):
            correct += int((model(data.x[i : i + batch]).argmax(1) == data.y[i : i + batch]).sum())
    return correct / max(len(data), 1)


__all__ = ["accuracy", "fit"]
