"""The plain training loop: one model, ``torch.optim``, the reference the ensemble trainer must match."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.dp import mechanism
from privlab.dp.per_sample import per_sample_gradients
from privlab.errors import InvalidParameterError
from privlab.train.config import TrainConfig
from privlab.train.sampling import index_stream, init_model, noise_generator, num_steps


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """``torch.optim.SGD`` (momentum, L2 weight decay) or ``torch.optim.Adam`` from ``cfg``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)


def _private_grads(
    model: nn.Module,
    trainable: dict[str, nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> None:
    """Set ``.grad`` to ``(sum_i clip_C(g_i) + sigma C z) / B`` (DP-SGD-style, see :func:`train_model`)."""
    per_example = per_sample_gradients(model, F.cross_entropy, x, y)  # {name: (B, *shape)}, trainable only
    noisy = mechanism.dp_sgd_sum(
        per_example, max_grad_norm=cfg.max_grad_norm, noise_multiplier=cfg.noise_multiplier, generator=gen
    )
    for name, p in trainable.items():
        p.grad = noisy[name] / len(x)


def train_model(
    model: nn.Module,
    dataset: ArrayDataset,
    cfg: TrainConfig,
    *,
    progress: bool = False,
) -> nn.Module:
    """Train ``model`` in place on all of ``dataset`` with cross-entropy and return it.

    Takes ``ceil(cfg.epochs * N / cfg.batch_size)`` steps; the batches come from
    :func:`privlab.train.sampling.index_stream` seeded with ``cfg.seed`` (the initialisation is
    the caller's: use :func:`privlab.train.sampling.init_model` for a seeded one). With
    ``cfg.private`` each step's gradient is ``(sum_i clip_C(g_i) + sigma C z) / B`` (per-example
    gradients by ``torch.func``, then :func:`privlab.dp.mechanism.dp_sgd_sum`: flat clipping, ``z``
    standard normal per coordinate from :func:`privlab.train.sampling.noise_generator`, drawn
    parameter by parameter in ``named_parameters`` order).
    """
    if len(dataset) == 0:
        raise InvalidParameterError("The 'dataset' parameter of train_model must be non-empty. Got 0 rows instead.")
    steps = num_steps(len(dataset), cfg.epochs, cfg.batch_size)
    batches = index_stream(len(dataset), steps, cfg.batch_size, cfg.seed)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = make_optimizer(list(trainable.values()), cfg)
    gen = noise_generator(cfg.seed) if cfg.private else None
    model.train()
    for t in tqdm(range(steps), disable=not progress, desc="train", leave=False):
        idx = batches[t]
        opt.zero_grad(set_to_none=True)
        if gen is None:
            F.cross_entropy(model(dataset.x[idx]), dataset.y[idx]).backward()
        else:
            _private_grads(model, trainable, dataset.x[idx], dataset.y[idx], cfg, gen)
        opt.step()
    model.eval()
    return model


TrainFn = Callable[[nn.Module, ArrayDataset, TrainConfig], nn.Module]


def one_by_one(
    model_factory: Callable[[], nn.Module],
    dataset: ArrayDataset,
    mask: np.ndarray,
    seeds: Sequence[int],
    cfg: TrainConfig,
    train_fn: TrainFn | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Stacked state of the models of ``mask`` rows trained one after another (the naive reference)."""
    fn = train_fn or train_model
    states = []
    for row, seed in zip(mask, seeds, strict=True):
        m = init_model(model_factory, seed)
        m = fn(m, dataset.subset(torch.as_tensor(row)), dataclasses.replace(cfg, seed=seed)) or m
        states.append({k: v.detach().clone() for k, v in m.state_dict().items()})
        if progress:
            tqdm.write(f"trained model seed={seed}")
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}
