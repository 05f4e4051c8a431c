"""Fine-tuning on the retain set ("catastrophic forgetting" baseline; e.g. Warnecke et al. 2023,
Kurmanji et al. 2023's "Finetune"): continue training the original model on the retain set only,
with :func:`privlab.train.train_model` and the method's own epochs / learning rate.
"""

from __future__ import annotations

import copy
from dataclasses import replace

from torch import nn

from privlab.data import ArrayDataset
from privlab.train import train_model
from privlab.unlearn._steps import steps_for
from privlab.unlearn.base import UnlearnConfig, UnlearnResult, register


@register("finetune", "approximate", "fine-tuning on the retain set (Kurmanji et al. 2023, baseline)")
def unlearn_finetune(
    model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig
) -> UnlearnResult:
    cfg = replace(config.step_config(), batch_size=min(config.batch_size, len(retain)))
    m = train_model(copy.deepcopy(model), retain, cfg, progress=config.progress)
    steps = steps_for(len(retain), config.epochs, config.batch_size)
    return UnlearnResult(m, "finetune", 0.0, steps, steps * cfg.batch_size, 0.0)
