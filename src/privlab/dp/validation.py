"""Refuse modules that break DP-SGD before training starts, and say why and how to fix it.

DP-SGD's sensitivity argument needs example i's gradient to depend on example i only. BatchNorm (in
training mode, and through its running statistics) normalises each example with statistics of the
whole batch, so one example changes every other example's gradient and the clipped-sum sensitivity
is no longer C. InstanceNorm with running statistics leaks batch statistics into the model the same
way. Layers with trainable parameters that privlab has no per-example rule for are refused too.
"""

from __future__ import annotations

from torch import nn

from privlab._validation import check_int
from privlab.dp.layers import SUPPORTED_LAYERS
from privlab.errors import UnsupportedModuleError

_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_INSTANCENORM = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def module_problems(model: nn.Module) -> list[str]:
    """Every reason ``model`` cannot be trained with DP-SGD (empty if it can)."""
    problems: list[str] = []
    for name, m in model.named_modules():
        where = name or "<root>"
        if isinstance(m, _BATCHNORM):
            problems.append(
                f"{where} ({type(m).__name__}) mixes examples: it normalises each example with statistics "
                "of the whole batch, so one example's gradient depends on the others and DP-SGD's "
                "per-example sensitivity bound fails. Fix: replace it with GroupNorm, e.g. "
                "`model = privlab.dp.replace_batchnorm(model, groups=8)`."
            )
            continue
        if isinstance(m, _INSTANCENORM) and m.track_running_stats:
            problems.append(
                f"{where} ({type(m).__name__}) has track_running_stats=True: its running statistics "
                "aggregate examples outside DP-SGD's noise. Fix: construct it with "
                "track_running_stats=False, or use GroupNorm."
            )
            continue
        own = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not isinstance(m, SUPPORTED_LAYERS):
            problems.append(
                f"{where} ({type(m).__name__}) has trainable parameters but privlab has no per-example "
                "gradient rule for it (supported: Linear, Conv2d, Embedding, LayerNorm, GroupNorm, RMSNorm). "
                "Fix: build it from supported layers, or freeze it with `p.requires_grad_(False)`."
            )
        elif isinstance(m, nn.Conv2d) and (
            m.groups != 1 or m.padding_mode != "zeros" or (isinstance(m.padding, str) and m.padding != "valid")
        ):
            problems.append(
                f"{where} (Conv2d) uses groups={m.groups}, padding={m.padding!r}, padding_mode={m.padding_mode!r}; "
                "privlab's per-example rule supports groups=1 with numeric zero padding. Fix: use integer "
                "padding and groups=1, or freeze this layer."
            )
        elif isinstance(m, nn.Embedding) and m.scale_grad_by_freq:
            problems.append(
                f"{where} (Embedding) uses scale_grad_by_freq=True: it divides each row's gradient by the row's "
                "count in the whole batch, which mixes examples, and privlab's per-example rule would silently "
                "ignore it. Fix: construct it with scale_grad_by_freq=False."
            )
    return problems


def validate_module(model: nn.Module) -> None:
    """Raise :class:`UnsupportedModuleError` listing every problem of ``model`` for DP-SGD."""
    problems = module_problems(model)
    if problems:
        raise UnsupportedModuleError(
            "The 'model' parameter of make_private must contain only modules DP-SGD supports. Got:\n- "
            + "\n- ".join(problems)
        )


def replace_batchnorm(model: nn.Module, groups: int = 8) -> nn.Module:
    """Replace every BatchNorm by ``GroupNorm(g, C)`` in place (and return the model).

    ``g`` is the largest divisor of C that is at most ``groups`` (GroupNorm needs C % g == 0). Affine
    parameters are copied; running statistics are dropped (GroupNorm uses per-example statistics,
    Wu & He 2018, "Group Normalization").
    """
    check_int(groups, "groups", "replace_batchnorm", low=1)
    if isinstance(model, _BATCHNORM):
        return _to_groupnorm(model, groups)
    for name, child in model.named_children():
        if isinstance(child, _BATCHNORM):
            setattr(model, name, _to_groupnorm(child, groups))
        else:
            replace_batchnorm(child, groups)
    return model


def _to_groupnorm(bn: nn.modules.batchnorm._NormBase, groups: int) -> nn.GroupNorm:
    C = bn.num_features
    g = max(d for d in range(1, min(groups, C) + 1) if C % d == 0)
    gn = nn.GroupNorm(g, C, eps=bn.eps, affine=bn.affine)
    if bn.affine:
        gn.weight.data.copy_(bn.weight.data)
        gn.bias.data.copy_(bn.bias.data)
    return gn


__all__ = ["module_problems", "replace_batchnorm", "validate_module"]
