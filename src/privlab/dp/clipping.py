"""Per-example gradient norms for clipping: flat (one norm over all parameters) and per-layer.

Flat clipping (Abadi et al. 2016, "Deep Learning with Differential Privacy", Alg. 1) scales example
i's gradient by ``c_i = min(1, C / (||g_i||_2 + 1e-6))``, so ``||c_i g_i|| <= C`` and the summed clipped
gradient has L2 sensitivity C under adding or removing one example.

Per-layer clipping (McMahan et al. 2018, "A General Approach to Adding Differential Privacy to
Iterative Training Procedures") clips each of the K parameter tensors separately to ``C / sqrt(K)``;
the concatenation then has norm at most ``sqrt(K * C^2 / K) = C``: the same sensitivity, so the same
noise ``sigma * C`` applies.

The clipping rule itself and the clipped sum live in :mod:`privlab.dp.mechanism` (the one DP-SGD
mechanism); this module only measures norms, taking ``{name: (B, *shape)}`` dicts.
"""

from __future__ import annotations

import torch

from privlab._validation import check_choice

CLIP_MODES = ("flat", "per_layer")


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
