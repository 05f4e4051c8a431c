"""Gradient ascent on the forget set (Golatkar et al. 2020's "NegGrad"; Thudi et al. 2022):
maximise the cross-entropy of the forget examples, ``theta <- theta + lr * grad CE(forget batch)``,
for ``config.epochs`` passes over the forget set.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.unlearn._steps import Batches, optimizer_for, step, steps_for, sub_seed
from privlab.unlearn.base import UnlearnConfig, UnlearnResult, register


@register("gradient_ascent", "approximate", "gradient ascent on the forget set (NegGrad; Golatkar et al. 2020)")
def unlearn_gradient_ascent(
    model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig
) -> UnlearnResult:
    m = copy.deepcopy(model).train()
    steps = steps_for(len(forget), config.epochs, config.batch_size)
    fb = Batches(forget, steps, config.batch_size, sub_seed(config.seed, 0))
    opt = optimizer_for(m, config)
    for t in tqdm(range(steps), disable=not config.progress, desc="gradient ascent", leave=False):
        x, y = fb[t]

        def loss(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            return -F.cross_entropy(m(x), y)

        step(opt, loss)
    return UnlearnResult(m.eval(), "gradient_ascent", 0.0, steps, steps * fb.size, 0.0)
