"""The plain training loop: one model, ``torch.optim``, the reference the ensemble trainer must match."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.train.config import TrainConfig
from privlab.train.sampling import index_stream, num_steps


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """``torch.optim.SGD`` (momentum, L2 weight decay) or ``torch.optim.Adam`` from ``cfg``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)


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
    the caller's: use :func:`privlab.train.sampling.init_model` for a seeded one).
    """
    if len(dataset) == 0:
        raise InvalidParameterError("The 'dataset' parameter of train_model must be non-empty. Got 0 rows instead.")
    steps = num_steps(len(dataset), cfg.epochs, cfg.batch_size)
    batches = index_stream(len(dataset), steps, cfg.batch_size, cfg.seed)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    model.train()
    for t in tqdm(range(steps), disable=not progress, desc="train", leave=False):
        idx = batches[t]
        loss = F.cross_entropy(model(dataset.x[idx]), dataset.y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model
