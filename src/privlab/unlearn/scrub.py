"""SCRUB (Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning", NeurIPS): the original
model is a frozen teacher; a student (initialised from it) alternates

* max-steps on the forget set: maximise ``d(x) = KL(p_T(x) || p_S(x))`` (softmax at temperature
  ``tau``, scaled by ``tau^2``), i.e. minimise ``-d`` -- move away from the teacher on forget data;
* min-steps on the retain set: minimise ``kd_weight * d(x) + ce_weight * CE(S(x), y)`` -- stay
  close to the teacher (and correct) on retain data.

Each of ``ceil(config.epochs)`` epochs is one pass of min-steps over the retain set, preceded by
one pass of max-steps over the forget set during the first ``config.max_epochs`` epochs (the
paper's ``msteps``), all with one optimiser, as in the authors' code.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.unlearn._steps import Batches, optimizer_for, step, steps_for, sub_seed
from privlab.unlearn.base import UnlearnConfig, UnlearnResult, register


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(t / tau) || softmax(s / tau))`` averaged over the batch (Hinton et al. 2015)."""
    log_s = F.log_softmax(student_logits / tau, dim=1)
    p_t = F.softmax(teacher_logits / tau, dim=1)
    return F.kl_div(log_s, p_t, reduction="batchmean") * tau**2


@register("scrub", "approximate", "SCRUB (Kurmanji et al. 2023)")
def unlearn_scrub(model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig) -> UnlearnResult:
    teacher = copy.deepcopy(model).eval()
    student = copy.deepcopy(model).train()
    opt = optimizer_for(student, config)
    tau = config.kd_temperature
    epochs = math.ceil(config.epochs)
    nf = steps_for(len(forget), 1.0, config.batch_size)
    nr = steps_for(len(retain), 1.0, config.batch_size)
    fb = Batches(forget, nf * max(config.max_epochs, 1), config.batch_size, sub_seed(config.seed, 0))
    rb = Batches(retain, nr * epochs, config.batch_size, sub_seed(config.seed, 1))
    steps = examples = 0
    for e in tqdm(range(epochs), disable=not config.progress, desc="scrub", leave=False):
        if e < config.max_epochs:
            for t in range(nf):
                x, _ = fb[e * nf + t]
                with torch.no_grad():
                    zt = teacher(x)

                def away(x: torch.Tensor = x, zt: torch.Tensor = zt) -> torch.Tensor:
                    return -distill_kl(student(x), zt, tau)

                step(opt, away)
                steps, examples = steps + 1, examples + len(x)
        for t in range(nr):
            x, y = rb[e * nr + t]
            with torch.no_grad():
                zt = teacher(x)

            def loss(x: torch.Tensor = x, y: torch.Tensor = y, zt: torch.Tensor = zt) -> torch.Tensor:
                z = student(x)
                return config.kd_weight * distill_kl(z, zt, tau) + config.ce_weight * F.cross_entropy(z, y)

            step(opt, loss)
            steps, examples = steps + 1, examples + len(x)
    return UnlearnResult(student.eval(), "scrub", 0.0, steps, examples, 0.0)
