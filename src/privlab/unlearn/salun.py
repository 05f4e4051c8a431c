"""SalUn (Fan et al. 2024, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency", ICLR): unlearn with random labels, but only in the weights that matter for the forget set.

1. Saliency mask: ``g = grad_theta CE(theta_o; forget set)`` (the forgetting loss, over the whole
   forget set); ``m = 1[|g| >= q]`` with ``q`` the ``1 - saliency_fraction`` quantile of ``|g|`` over
   all weights (the paper's hard threshold, 50% by default).
2. Random labelling: minimise ``CE(theta; x_f, y') + CE(theta; x_r, y_r)`` where each forget example
   gets a fixed random label ``y' != y`` and ``(x_r, y_r)`` is a retain batch, updating only the
   salient weights: ``theta = m * theta + (1 - m) * theta_o`` after every step.

``config.epochs`` passes over the forget set; each step pairs a forget batch with a retain batch.
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


def saliency_mask(
    model: nn.Module, forget: ArrayDataset, fraction: float, batch: int = 1024
) -> dict[str, torch.Tensor]:
    """``{name: bool mask}`` of the ``fraction`` of trainable weights with the largest ``|grad CE(forget)|``."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(0, len(forget), batch):
        x, y = forget.x[i : i + batch], forget.y[i : i + batch]
        g = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), list(params.values()))
        for n, gi in zip(params, g, strict=True):
            grads[n] += gi
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    k = max(1, round(fraction * flat.numel()))
    q = torch.topk(flat, k).values.min()
    return {n: g.abs() >= q for n, g in grads.items()}


def random_labels(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A label ``!= y`` drawn uniformly per example (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, y.shape, generator=gen)
    return (y + shift) % num_classes


@register("salun", "approximate", "SalUn (Fan et al. 2024)")
def unlearn_salun(model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig) -> UnlearnResult:
    m = copy.deepcopy(model).eval()
    mask = saliency_mask(m, forget, config.saliency_fraction)
    frozen = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    with torch.no_grad():
        num_classes = int(m(forget.x[:1]).shape[1])
    relabelled = ArrayDataset(forget.x, random_labels(forget.y, num_classes, sub_seed(config.seed, 2)))
    steps = steps_for(len(forget), config.epochs, config.batch_size)
    fb = Batches(relabelled, steps, config.batch_size, sub_seed(config.seed, 0))
    rb = Batches(retain, steps, config.batch_size, sub_seed(config.seed, 1))
    opt = optimizer_for(m, config)
    named = dict(m.named_parameters())
    m.train()
    for t in tqdm(range(steps), disable=not config.progress, desc="salun", leave=False):
        (xf, yf), (xr, yr) = fb[t], rb[t]
        step(opt, lambda: F.cross_entropy(m(xf), yf) + F.cross_entropy(m(xr), yr))  # noqa: B023
        with torch.no_grad():
            for n, keep in mask.items():
                named[n].copy_(torch.where(keep, named[n], frozen[n]))
    frac = float(sum(int(v.sum()) for v in mask.values()) / sum(v.numel() for v in mask.values()))
    return UnlearnResult(
        m.eval(), "salun", 0.0, steps, steps * (fb.size + rb.size) + len(forget), 0.0, {"salient_fraction": frac}
    )
