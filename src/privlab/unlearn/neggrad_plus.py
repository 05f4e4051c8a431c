"""NegGrad+ (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning", Sec. 5 baselines):
descend on the retain set and ascend on the forget set at once,

    L(theta) = alpha * CE(retain batch) - (1 - alpha) * CE(forget batch),

for ``config.epochs`` passes over the retain set (each step pairs a retain batch with a forget batch).
"""

from __future__ import annotations

import copy

import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.unlearn._steps import Batches, optimizer_for, step, steps_for, sub_seed
from privlab.unlearn.base import UnlearnConfig, UnlearnResult, register


@register("neggrad_plus", "approximate", "NegGrad+ (Kurmanji et al. 2023)")
def unlearn_neggrad_plus(
    model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig
) -> UnlearnResult:
    m = copy.deepcopy(model).train()
    steps = steps_for(len(retain), config.epochs, config.batch_size)
    rb = Batches(retain, steps, config.batch_size, sub_seed(config.seed, 0))
    fb = Batches(forget, steps, config.batch_size, sub_seed(config.seed, 1))
    opt = optimizer_for(m, config)
    a = config.alpha

    for t in tqdm(range(steps), disable=not config.progress, desc="neggrad+", leave=False):
        (xr, yr), (xf, yf) = rb[t], fb[t]
        step(opt, lambda: a * F.cross_entropy(m(xr), yr) - (1 - a) * F.cross_entropy(m(xf), yf))  # noqa: B023
    return UnlearnResult(m.eval(), "neggrad_plus", 0.0, steps, steps * (rb.size + fb.size), 0.0)
