"""Per-example gradient clipping: flat (one norm over all parameters) and per-layer.

Flat clipping (Abadi et al. 2016, "Deep Learning with Differential Privacy", Alg. 1) scales example
i's gradient by ``c_i = min(1, C / (||g_i||_2 + 1e-6))``, so ``||c_i g_i|| <= C`` and the summed clipped
gradient has L2 sensitivity C under adding or removing one example.

Per-layer clipping (McMahan et al. 2018, "A General Approach to Adding Differential Privacy to
Iterative Training Procedures") clips each of the K parameter tensors separately to ``C / sqrt(K)``;
the concatenation then has norm at most ``sqrt(K * C^2 / K) = C``: the same sensitivity, so the same
noise ``sigma * C`` applies.

The functions take and return ``{name: tensor}`` dicts. Per-example norms are available from
:func:`per_example_norms` (a separate function, so :func:`clip_gradients` always returns one shape).
"""

from __future__ import annotations

import math

import torch

from privlab._validation import check_choice, check_real

CLIP_MODES = ("flat", "per_layer")
_EPS = 1e-6


def clip_factors(norms: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``min(1, max_norm / (norms + 1e-6))`` elementwise."""
    return (max_norm / (norms + _EPS)).clamp(max=1.0)


def squared_norms(per_example: torch.Tensor) -> torch.Tensor:
    """``||g_i||^2`` of each row of a ``(B, *shape)`` tensor, in one pass (no ``(B, *shape)`` temporary)."""
    return torch.linalg.vector_norm(per_example.flatten(1), dim=1).square()


def per_example_norms(per_sample: dict[str, torch.Tensor], mode: str = "flat") -> dict[str, torch.Tensor]:
    """Per-example L2 norms: ``{"all": (B,)}`` for ``flat``, ``{name: (B,)}`` for ``per_layer``."""
    check_choice(mode, "mode", "per_example_norms", CLIP_MODES)
    sq = {k: squared_norms(v) for k, v in per_sample.items()}
    if mode == "per_layer":
        return {k: s.sqrt() for k, s in sq.items()}
    return {"all": torch.stack(list(sq.values())).sum(0).sqrt()}


def clip_gradients(
    per_sample: dict[str, torch.Tensor], max_grad_norm: float, mode: str = "flat"
) -> dict[str, torch.Tensor]:
    """Clip each example's gradient and sum over the batch.

    ``per_sample``: ``{name: (B, *shape)}``; returns ``{name: (*shape)}`` = ``sum_i c_i g_i`` whose
    L2 sensitivity (add/remove one example) is ``max_grad_norm`` in both modes.
    """
    C = check_real(max_grad_norm, "max_grad_norm", "clip_gradients", low=0.0, low_open=True)
    check_choice(mode, "mode", "clip_gradients", CLIP_MODES)
    if not per_sample:
        return {}
    norms = per_example_norms(per_sample, mode)
    if mode == "flat":
        f = clip_factors(norms["all"], C)
        return {k: torch.tensordot(f.to(v.dtype), v, dims=1) for k, v in per_sample.items()}
    c_layer = C / math.sqrt(len(per_sample))
    return {k: torch.tensordot(clip_factors(norms[k], c_layer).to(v.dtype), v, dims=1) for k, v in per_sample.items()}
