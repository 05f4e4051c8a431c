"""Exact unlearning by retraining from scratch on the retain set (the gold standard every other
method is measured against). The initialisation is re-drawn with ``config.train.seed`` and the
training is :func:`privlab.train.train_model` with ``config.train``: the same recipe as the original.
"""

from __future__ import annotations

from torch import nn

from privlab.data import ArrayDataset
from privlab.train import num_steps
from privlab.unlearn.base import UnlearnConfig, UnlearnResult, register, reinit, train_plain


def retrain_from_scratch(model: nn.Module, retain: ArrayDataset, config: UnlearnConfig) -> nn.Module:
    """A fresh copy of ``model``'s architecture (seed ``config.train.seed``) trained on ``retain``."""
    return train_plain(reinit(model, config.train.seed), retain, config)


@register("retrain", "exact", "retraining without the forget set (the reference of every evaluation)")
def unlearn_retrain(
    model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig
) -> UnlearnResult:
    m = retrain_from_scratch(model, retain, config)
    steps = num_steps(len(retain), config.train.epochs, config.train.batch_size)
    return UnlearnResult(m, "retrain", 0.0, steps, steps * config.train.batch_size, 1.0)
