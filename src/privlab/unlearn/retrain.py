"""Exact unlearning by retraining from scratch on the retain set (the gold standard every other
method is measured against). The initialisation is re-drawn with ``config.train.seed`` -- by the
model's factory if one is recorded (:func:`privlab.unlearn.attach_factory`; the evaluation does),
else by every module's ``reset_parameters``, refusing parameters none covers (they would keep their
trained values) -- and the training is :func:`privlab.train.train_model` with ``config.train``: the
same recipe as the original.
"""

from __future__ import annotations

from torch import nn

from privlab.data import ArrayDataset
from privlab.train import num_steps
from privlab.unlearn.base import UnlearnConfig, UnlearnResult, register, reinit, train_plain


def retrain_from_scratch(model: nn.Module, retain: ArrayDataset, config: UnlearnConfig) -> nn.Module:
    """A fresh copy of ``model``'s architecture (seed ``config.train.seed``, :func:`reinit`) trained on ``retain``.

    Raises UnsupportedModuleError naming 'model' if no factory is recorded and some parameter is
    not re-drawn by a ``reset_parameters``.
    """
    return train_plain(reinit(model, config.train.seed), retain, config)


@register("retrain", "exact", "retraining without the forget set (the reference of every evaluation)")
def unlearn_retrain(
    model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig
) -> UnlearnResult:
    m = retrain_from_scratch(model, retain, config)
    steps = num_steps(len(retain), config.train.epochs, config.train.batch_size)
    return UnlearnResult(m, "retrain", 0.0, steps, steps * config.train.batch_size, 1.0)
