"""Adapting a Hugging Face causal LM for privlab.dp without touching privlab.dp.

LLaMA-family models use their own RMSNorm class (``LlamaRMSNorm``: ``y = w * x / sqrt(mean(x^2) + eps)``,
Zhang & Sennrich 2019), which privlab.dp does not know by class. :func:`prepare_for_dp`:

* replaces every such layer by ``torch.nn.RMSNorm`` sharing the same gain parameter, after checking on
  a random input that both give the same output (a variant with another formula, e.g. Gemma's
  ``(1 + w)`` gain, fails the check and is frozen instead); privlab.dp has a per-example rule for
  ``nn.RMSNorm`` (``dw_i = sum_t g_it * xhat_it``), so the gains are trained with DP;
* freezes any other layer with trainable parameters that privlab.dp cannot clip (its parameters keep
  their pretrained values);
* with ghost clipping, gives one copy per layer to a parameter shared by several layers that ghost
  clipping cannot clip jointly (untied; identical at the start). A weight tied across Linear / Conv2d /
  Embedding layers (SmolLM2's input embedding and LM head) stays tied: ghost clipping computes its
  joint per-example norm (``privlab.dp.ghost.tied_squared_norms``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from privlab.dp.layers import SUPPORTED_LAYERS


@dataclass(frozen=True)
class Adaptation:
    """What :func:`prepare_for_dp` changed: module / parameter names."""

    converted: list[str] = field(default_factory=list)  # foreign RMSNorm layers now nn.RMSNorm
    frozen: list[str] = field(default_factory=list)  # parameters no longer trained
    untied: list[str] = field(default_factory=list)  # layers given their own copy of a shared weight


def _rmsnorm_eps(m: nn.Module) -> float | None:
    for attr in ("variance_epsilon", "eps", "epsilon"):
        val = getattr(m, attr, None)
        if isinstance(val, float | int) and not isinstance(val, bool):
            return float(val)
    return None


@torch.no_grad()
def as_torch_rmsnorm(m: nn.Module) -> nn.RMSNorm | None:
    """``nn.RMSNorm`` computing what ``m`` computes, sharing its gain; None if ``m`` is not such a layer.

    ``m`` qualifies when its class name ends in "RMSNorm", it owns exactly one parameter (a 1-D
    ``weight``), names its epsilon, and matches the replacement on a random input to 1e-5.
    """
    if isinstance(m, nn.RMSNorm) or not type(m).__name__.endswith("RMSNorm"):
        return None
    own = dict(m.named_parameters(recurse=False))
    w, eps = own.get("weight"), _rmsnorm_eps(m)
    if set(own) != {"weight"} or w is None or w.dim() != 1 or eps is None:
        return None
    new = nn.RMSNorm(w.shape[0], eps=eps, device=w.device, dtype=w.dtype)
    new.weight = w  # the same Parameter: optimizer, state dict and tying see no change
    x = torch.randn(2, 3, w.shape[0], generator=torch.Generator().manual_seed(0)).to(w)
    try:
        same = torch.allclose(m(x), new(x), rtol=1e-5, atol=1e-6)
    except Exception:  # a layer that cannot run on a plain tensor is not convertible
        return None
    return new if same else None


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def prepare_for_dp(model: nn.Module, clipping: str) -> Adaptation:
    """Convert foreign RMSNorms, freeze what privlab.dp cannot clip, untie what ghost cannot clip jointly.

    The model is changed in place; the result lists what changed.
    """
    out = Adaptation()
    for name, m in list(model.named_modules()):
        if name and any(p.requires_grad for p in m.parameters(recurse=False)):
            new = as_torch_rmsnorm(m)
            if new is not None:
                new.train(m.training)
                _set_submodule(model, name, new)
                out.converted.append(name)
    for name, m in model.named_modules():
        own = [(n, p) for n, p in m.named_parameters(recurse=False) if p.requires_grad]
        if own and not isinstance(m, SUPPORTED_LAYERS):
            for n, p in own:
                p.requires_grad_(False)
                out.frozen.append(f"{name}.{n}" if name else n)
    if clipping == "ghost":
        seen: dict[int, bool] = {}  # parameter id -> its first user is a Linear/Conv2d/Embedding weight
        for name, m in model.named_modules():
            if not isinstance(m, SUPPORTED_LAYERS):
                continue
            for pname, p in list(m.named_parameters(recurse=False)):
                if not p.requires_grad:
                    continue
                tied_matmul = pname == "weight" and isinstance(m, nn.Linear | nn.Conv2d | nn.Embedding)
                if id(p) in seen and not (tied_matmul and seen[id(p)]):
                    setattr(m, pname, nn.Parameter(p.detach().clone()))
                    out.untied.append(name)
                elif id(p) not in seen:
                    seen[id(p)] = tied_matmul
    return out
