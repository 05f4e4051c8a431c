"""The one DP-SGD mechanism: clip each example's gradient to C, sum, add ``N(0, sigma^2 C^2 I)``.

Every DP-SGD path in privlab goes through this module: :class:`~privlab.dp.DPOptimizer` (flat,
per-layer and ghost clipping, the white-box audits' canary gradients), the reference-model trainers
(:func:`privlab.train.train_model` one by one, the vectorised ensemble in
:mod:`privlab.train.vmapped` / :mod:`privlab.train.stacked_mlp`, whose batched forms are tested equal
to these functions). So an audit of one path is an audit of all of them.

Formal guarantee (Abadi et al. 2016, "Deep Learning with Differential Privacy", Alg. 1). Flat
clipping scales example i's gradient by ``c_i = min(1, C / (||g_i||_2 + 1e-6))``, so
``||c_i g_i|| <= C``; the clipped sum ``S = sum_i c_i g_i`` has L2 sensitivity C under adding or
removing one example. Per-layer clipping (McMahan et al. 2018) clips each of the K parameter
tensors to ``C / sqrt(K)``: the same sensitivity C. Releasing ``S + N(0, sigma^2 C^2 I)`` is the
Gaussian mechanism with noise multiplier sigma (Dwork & Roth 2014, Thm. A.1), accounted per step
as the Poisson-subsampled Gaussian by :mod:`privlab.accounting` (Mironov 2017; Balle et al. 2018).

The two primitives every path calls are :func:`clip_factors` (the clipping rule) and
:func:`gaussian_noise` (the one noise source: PyTorch's seeded generator, or the operating
system's CSPRNG with ``secure=True``, see :mod:`privlab.dp.noise`). Callers reach them through this
module (``mechanism.clip_factors``), never a copy, so a fault in either is seen by every path and
every audit (``tests/integration/test_mechanism_fault.py`` checks that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from privlab._validation import check_choice, check_real
from privlab.dp.clipping import CLIP_MODES, per_example_norms
from privlab.dp.noise import secure_standard_normal

_EPS = 1e-6


def clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """``min(1, C / (norms + 1e-6))`` elementwise; ``C = inf`` gives factors 1 (no clipping)."""
    return (max_grad_norm / (norms + _EPS)).clamp(max=1.0)


def clip_factor(norm: float, max_grad_norm: float) -> float:
    """:func:`clip_factors` for one norm held as a Python float: ``min(1, C / (norm + 1e-6))``."""
    return min(1.0, max_grad_norm / (norm + _EPS))


def clipped_sum(
    per_sample: dict[str, torch.Tensor], max_grad_norm: float, mode: str = "flat"
) -> dict[str, torch.Tensor]:
    """``sum_i c_i g_i`` of ``{name: (B, *shape)}`` without argument checks (``max_grad_norm`` may be inf).

    ``flat``: one factor per example over all tensors; ``per_layer``: each tensor clipped to
    ``C / sqrt(K)`` for K tensors. L2 sensitivity ``max_grad_norm`` in both modes.
    """
    if not per_sample:
        return {}
    norms = per_example_norms(per_sample, mode)
    if mode == "flat":
        f = clip_factors(norms["all"], max_grad_norm)
        return {k: torch.tensordot(f.to(v.dtype), v, dims=1) for k, v in per_sample.items()}
    c_layer = max_grad_norm / math.sqrt(len(per_sample))
    return {k: torch.tensordot(clip_factors(norms[k], c_layer).to(v.dtype), v, dims=1) for k, v in per_sample.items()}


def clip_gradients(
    per_sample: dict[str, torch.Tensor], max_grad_norm: float, mode: str = "flat"
) -> dict[str, torch.Tensor]:
    """Clip each example's gradient and sum over the batch.

    ``per_sample``: ``{name: (B, *shape)}``; returns ``{name: (*shape)}`` = ``sum_i c_i g_i`` whose
    L2 sensitivity (add/remove one example) is ``max_grad_norm`` in both modes.
    """
    C = check_real(max_grad_norm, "max_grad_norm", "clip_gradients", low=0.0, low_open=True)
    check_choice(mode, "mode", "clip_gradients", CLIP_MODES)
    return clipped_sum(per_sample, C, mode)


def gaussian_noise(
    like: torch.Tensor, std: float, generator: torch.Generator | None = None, secure: bool = False
) -> torch.Tensor:
    """``N(0, std^2)`` noise with ``like``'s shape, dtype and device: the one noise source of DP-SGD."""
    if secure:
        return secure_standard_normal(like.shape, like.dtype).to(like.device).mul_(std)
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device).mul_(std)


def add_noise(
    summed: dict[str, torch.Tensor], std: float, generator: torch.Generator | None = None, secure: bool = False
) -> dict[str, torch.Tensor]:
    """Return ``{name: summed[name] + N(0, std^2 I)}``; for DP-SGD ``std = noise_multiplier * max_grad_norm``.

    Draws tensor by tensor in the dict's order. ``generator`` seeds PyTorch's sampler (reproducible,
    not secure); ``secure=True`` ignores it and uses the operating system's CSPRNG (see
    :mod:`privlab.dp.noise` for the floating-point caveat).
    """
    s = check_real(std, "std", "add_noise", low=0.0)
    return {k: gaussian_noise(v, s, generator, secure).add_(v) for k, v in summed.items()}  # = v + noise, exactly


def add_noise_stacked(
    stacked: dict[str, torch.Tensor], std: float, generators: Sequence[torch.Generator], names: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Batched :func:`add_noise` over K stacked models, in place: ``stacked[name][k] += N(0, std^2 I)``.

    Model k draws from ``generators[k]`` tensor by tensor in ``names`` order: the same numbers as
    ``add_noise({n: stacked[n][k] for n in names}, std, generators[k])``.
    """
    for k, gen in enumerate(generators):
        for name in names:
            stacked[name][k].add_(gaussian_noise(stacked[name][k], std, gen))
    return stacked


def dp_sgd_sum(
    per_sample: dict[str, torch.Tensor],
    *,
    max_grad_norm: float,
    noise_multiplier: float,
    mode: str = "flat",
    generator: torch.Generator | None = None,
    secure: bool = False,
) -> dict[str, torch.Tensor]:
    """One release of the mechanism: ``sum_i clip_C(g_i) + N(0, sigma^2 C^2 I)`` (sensitivity C)."""
    C = check_real(max_grad_norm, "max_grad_norm", "dp_sgd_sum", low=0.0, low_open=True)
    sigma = check_real(noise_multiplier, "noise_multiplier", "dp_sgd_sum", low=0.0)
    check_choice(mode, "mode", "dp_sgd_sum", CLIP_MODES)
    return add_noise(clipped_sum(per_sample, C, mode), sigma * C, generator, secure)


__all__ = [
    "add_noise",
    "add_noise_stacked",
    "clip_factors",
    "clip_gradients",
    "clipped_sum",
    "dp_sgd_sum",
    "gaussian_noise",
]
