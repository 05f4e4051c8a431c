"""Per-layer rules: per-example gradients, their norms, and clipped sums from (activation, output grad).

For a layer called on example i with input activations ``a_i`` and output gradients ``g_i`` (the
gradient of example i's loss with respect to the layer's output), every supported layer's
per-example parameter gradient is a simple function of ``(a_i, g_i)``:

* Linear (2-D or sequence input, T positions): ``dW_i = sum_t g_it a_it^T`` (p x d), ``db_i = sum_t g_it``.
  Its squared norm is computed either from the materialised ``dW_i`` (cost B*p*d memory) or with
  the *ghost norm* identity (Goodfellow 2015; Li et al. 2021, "Large Language Models Can Be Strong
  Differentially Private Learners", Sec. 4)::

      ||dW_i||_F^2 = sum_{t,s} (a_it . a_is) (g_it . g_is) = <A_i A_i^T, G_i G_i^T>_F

  which needs only B*T^2 memory; the cheaper of the two is chosen per layer ("mixed ghost norm",
  Bu et al. 2023, "Differentially Private Optimization on Large Model at Small Cost").
* Conv2d (groups=1): the same, after unfolding the input into patches, T = number of output pixels.
* Embedding: ``dE_i = sum_t onehot(id_it) g_it^T``; ``||dE_i||^2 = sum_{t,s} [id_it = id_is] g_it . g_is``.
* LayerNorm / GroupNorm / RMSNorm: ``dgamma_i = sum g_i * xhat_i`` over non-normalised positions,
  ``dbeta_i = sum g_i``; small, so always materialised. For RMSNorm (Zhang & Sennrich 2019,
  ``y = gamma * x / sqrt(mean(x^2) + eps)``, LLaMA's norm) ``xhat = x / sqrt(mean(x^2) + eps)`` and
  there is no bias. A captured LayerNorm passes the forward's per-position mean and rstd, so
  ``xhat = (x - mean) rstd`` costs no second normalisation.

This module turns captured calls into that canonical form and materialises per-example gradients
(the ``flat`` / ``per_layer`` modes); :mod:`privlab.dp.ghost` computes norms and clipped sums without
materialising them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from privlab.dp.mechanism import clip_factor, clip_factors, clipped_sum

NORM_LAYERS: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d, nn.Embedding, *NORM_LAYERS)


@dataclass(frozen=True)
class MatmulCapture:
    """Canonical form of Linear / Conv2d / Embedding calls: A (B, T, d) or ids (B, T), G (B, T, p)."""

    a: torch.Tensor
    g: torch.Tensor
    embedding: bool = False


def _weight_shape(module: nn.Module) -> tuple[int, ...]:
    w = module.weight
    if not isinstance(w, torch.Tensor):  # pragma: no cover - validation refuses such modules
        raise TypeError(f"{type(module).__name__}.weight is not a tensor")
    return tuple(w.shape)


def _linear_form(module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> MatmulCapture:
    """Reshape one call's activation/grad to (B, T, d) / (B, T, p)."""
    if isinstance(module, nn.Embedding):
        ids = a.reshape(a.shape[0], -1)  # (B, T)
        gg = g.reshape(g.shape[0], -1, g.shape[-1])  # (B, T, d)
        if module.padding_idx is not None:
            gg = gg * (ids != module.padding_idx).unsqueeze(-1).to(gg.dtype)
        return MatmulCapture(ids, gg, embedding=True)
    if isinstance(module, nn.Conv2d):
        pad = module.padding
        if isinstance(pad, str):  # only "valid" passes validation
            pad = (0, 0)
        cols = F.unfold(a, module.kernel_size, module.dilation, pad, module.stride)  # (B, Cin*k*k, L)
        return MatmulCapture(cols.transpose(1, 2), g.flatten(2).transpose(1, 2))  # (B, L, d), (B, L, Cout)
    # Linear: (B, *, d) -> (B, T, d)
    return MatmulCapture(a.reshape(a.shape[0], -1, a.shape[-1]), g.reshape(g.shape[0], -1, g.shape[-1]))


def matmul_capture(module: nn.Module, calls: list[tuple[torch.Tensor, torch.Tensor]]) -> MatmulCapture:
    """Concatenate every call of a (possibly reused) layer along T: the per-example grad is their sum."""
    forms = [_linear_form(module, a, g) for a, g in calls]
    if len(forms) == 1:
        return forms[0]
    return MatmulCapture(torch.cat([f.a for f in forms], 1), torch.cat([f.g for f in forms], 1), forms[0].embedding)


# A LayerNorm forward's (mean, rstd), shaped like its input with 1s for the normalised dimensions.
NormStats = tuple[torch.Tensor, torch.Tensor]


def _norm_affine_grads(
    module: nn.Module, calls: list[tuple[torch.Tensor, torch.Tensor]], stats: NormStats | None = None
) -> dict[str, torch.Tensor]:
    """Per-example (B, *shape) grads of a LayerNorm/GroupNorm/RMSNorm's weight and bias.

    ``stats`` (one LayerNorm call only): the forward's ``(mean, rstd)`` of ``calls[0]``'s input.
    """
    out: dict[str, torch.Tensor] = {}
    for x, g in calls:
        if isinstance(module, nn.LayerNorm | nn.RMSNorm):
            if stats is not None and isinstance(module, nn.LayerNorm):
                xhat = (x - stats[0]).mul_(stats[1])
            elif isinstance(module, nn.LayerNorm):
                xhat = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
            else:
                xhat = F.rms_norm(x, module.normalized_shape, None, module.eps)
            lead = tuple(range(1, x.dim() - len(module.normalized_shape)))  # positions, not batch
            gw = (g * xhat).sum(lead) if lead else g * xhat
            gb = g.sum(lead) if lead else g.clone()  # never g itself: callers scale the result in place
        elif isinstance(module, nn.GroupNorm):
            xhat = F.group_norm(x, module.num_groups, None, None, module.eps)
            spatial = tuple(range(2, x.dim()))
            gw = (g * xhat).sum(spatial) if spatial else g * xhat  # (B, C)
            gb = g.sum(spatial) if spatial else g.clone()
        else:  # pragma: no cover - callers dispatch on the layer type
            raise TypeError(f"not a normalisation layer: {type(module).__name__}")
        for name, val in (("weight", gw), ("bias", gb)):
            if getattr(module, name, None) is not None:
                out[name] = out[name] + val if name in out else val
    return out


def per_example_grads(
    module: nn.Module,
    calls: list[tuple[torch.Tensor, torch.Tensor]],
    scale: float = 1.0,
    *,
    stats: NormStats | None = None,
) -> dict[str, torch.Tensor]:
    """Materialised per-example gradients {local param name: (B, *param.shape)} of one layer, times ``scale``.

    ``scale`` multiplies the output gradients (the hooks pass the batch size to undo a mean loss). It
    is applied where it is cheapest: as the ``alpha`` of the per-example product of a Linear layer (no
    extra pass), otherwise to the per-example gradients when they are smaller than the output gradients.
    ``stats`` (one LayerNorm call only): the forward's ``(mean, rstd)``, so ``xhat`` is not recomputed.
    """
    if isinstance(module, NORM_LAYERS):
        return _scaled(_norm_affine_grads(module, calls, stats), scale)
    if isinstance(module, nn.Conv2d):
        return _scaled(_conv_per_example(module, calls), scale)
    cap = matmul_capture(module, calls)
    B = cap.g.shape[0]
    out: dict[str, torch.Tensor] = {}
    if cap.embedding and isinstance(module, nn.Embedding):
        V, d = module.num_embeddings, cap.g.shape[-1]
        flat = (cap.a + V * torch.arange(B, device=cap.a.device).unsqueeze(1)).reshape(-1)  # row in (B*V)
        scale_g = cap.g.shape[1] <= V  # scale the smaller of g (B, T, d) and dE (B, V, d)
        g = cap.g * scale if scale_g and scale != 1.0 else cap.g
        dE = torch.zeros(B * V, d, dtype=cap.g.dtype, device=cap.g.device).index_add_(0, flat, g.reshape(-1, d))
        out["weight"] = dE.view(B, V, d)
        return out if scale_g else _scaled(out, scale)
    out["weight"] = _linear_dw(cap.g, cap.a, scale).reshape(B, *_weight_shape(module))
    if getattr(module, "bias", None) is not None:
        out["bias"] = cap.g.sum(1).mul_(scale)
    return out


def _linear_dw(g: torch.Tensor, a: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale G_i^T A_i`` for each example: (B, T, p), (B, T, d) -> (B, p, d), one batched product
    with ``scale`` as its ``alpha`` (measured faster than ``einsum``'s permuted path)."""
    return torch.baddbmm(g.new_zeros(()), g.transpose(1, 2), a, beta=0.0, alpha=scale)


CHUNK_BYTES = 8 << 20  # per-example gradients computed this many bytes at a time (see clipped_linear_sum)
LOOP_BYTES = 64 << 10  # from this size of one example's weight gradient on, one example at a time


def clipped_linear_sum(
    module: nn.Linear, a: torch.Tensor, g: torch.Tensor, scale: float, threshold: float
) -> dict[str, torch.Tensor]:
    """Per-layer clipped sums ``{"weight", "bias"}`` of one Linear call: each tensor's per-example
    gradient (``dW_i = scale G_i^T A_i``, ``db_i = scale sum_t g_it``) clipped to ``threshold``, summed.

    The ``(B, p, d)`` per-example weight gradients are never built whole. A weight of at least
    ``LOOP_BYTES`` goes one example at a time (:func:`_clipped_weight_by_example`); a smaller one in
    chunks of ``CHUNK_BYTES`` of per-example gradients (one batched product, its norms and one
    weighted sum per chunk), where one product per example would cost more in calls than it saves.
    """
    cap = _linear_form(module, a, g)
    p = cap.g.shape[-1]
    d = cap.a.shape[-1]
    if p * d * cap.g.element_size() >= LOOP_BYTES:
        w = _clipped_weight_by_example(cap.g, cap.a, scale, threshold)
    else:
        chunk = max(2, CHUNK_BYTES // max(1, p * d * cap.g.element_size()))
        w = cap.g.new_zeros(p * d)
        for gs, as_ in zip(cap.g.split(chunk), cap.a.split(chunk), strict=True):
            dw = _linear_dw(gs, as_, scale).view(gs.shape[0], -1)
            w.addmv_(dw.t(), clip_factors(torch.linalg.vector_norm(dw, dim=1), threshold).to(dw.dtype))
    out = {"weight": w.view(module.weight.shape)}
    if module.bias is not None:
        out |= clipped_sum({"bias": cap.g.sum(1).mul_(scale)}, threshold, "flat")
    return out


def _clipped_weight_by_example(g: torch.Tensor, a: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    """``sum_i c_i scale G_i^T A_i`` with ``c_i = clip_factor(|scale| ||G_i^T A_i||_F, threshold)``.

    Each example's (p, d) gradient is one matrix product into the same buffer, which stays in the L2
    cache while its norm is taken and it is added to the sum. One thread of an AMD EPYC, B = 32,
    T = 128, two runs of ``benchmarks/dp_overhead/ab_per_layer.py``: a 1024 x 256 weight in 41-42 ms,
    against 43-61 ms by 8 MiB chunks of batched products, 70-81 ms materialised whole, and 31-33 ms
    for the non-private weight gradient.
    """
    buf = g.new_empty(g.shape[-1], a.shape[-1])
    w = torch.zeros_like(buf)
    for g_i, a_i in zip(g, a, strict=True):
        torch.mm(g_i.t(), a_i, out=buf)
        norm = abs(scale) * float(torch.linalg.vector_norm(buf))
        w.add_(buf, alpha=scale * clip_factor(norm, threshold))
    return w


def _scaled(grads: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """Multiply freshly computed per-example gradients by ``scale`` in place."""
    if scale != 1.0:
        for v in grads.values():
            v.mul_(scale)
    return grads


def _conv_args(module: nn.Conv2d) -> tuple[list[int], list[int], list[int]]:
    pad = (0, 0) if module.padding == "valid" else module.padding
    return list(module.stride), list(pad), list(module.dilation)  # type: ignore[arg-type]


def conv_weight_per_example(module: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(B, Cout, Cin, kh, kw) per-example weight gradients of one Conv2d call (input x, output grad g).

    ``dW_i[o, c, u, v] = sum_{p, q} g_i[o, p, q] x_i[c, s p + d u - pad, s q + d v - pad]`` (stride s,
    dilation d). Computed as one convolution with the batch as B groups: for single-channel inputs a
    forward convolution of the padded input (examples as channels) with ``g`` as the kernel (stride
    and dilation swap roles), otherwise the grouped weight-gradient convolution (Rochette et al.
    2019, "Efficient Per-Example Gradient Computations in Convolutional Neural Networks").
    """
    stride, pad, dilation = _conv_args(module)
    B, Cin = x.shape[:2]
    Cout, _, kh, kw = module.weight.shape
    if B == 0:  # an empty (Poisson) batch: both routes below would need B >= 1 groups
        return x.new_zeros(0, Cout, Cin, kh, kw)
    if Cin == 1:  # x as (1, B, H, W) is a free view; measured faster than the grouped backward here
        xp = F.pad(x.transpose(0, 1), (pad[1], pad[1], pad[0], pad[0]))  # (1, B, H + 2p, W + 2p)
        out = F.conv2d(
            xp, g.reshape(B * Cout, 1, *g.shape[2:]), None, dilation, 0, stride, B
        )  # (1, B*Cout, >=kh, >=kw)
        return out[:, :, :kh, :kw].reshape(B, Cout, 1, kh, kw)
    # Only the weight's shape matters to the weight gradient: an uninitialised buffer, never read.
    w = module.weight.new_empty(B * Cout, Cin, kh, kw)
    dW = torch.ops.aten.convolution_backward(
        g.reshape(1, B * Cout, *g.shape[2:]),
        x.reshape(1, B * Cin, *x.shape[2:]),
        w,
        None,
        stride,
        pad,
        dilation,
        False,
        [0, 0],
        B,
        [False, True, False],
    )[1]
    return dW.view(B, Cout, Cin, kh, kw)


def _conv_per_example(module: nn.Conv2d, calls: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per-example Conv2d grads ``{"weight": (B, *W.shape), "bias": (B, Cout)}`` summed over calls."""
    out: dict[str, torch.Tensor] = {}
    for x, g in calls:
        grads = {"weight": conv_weight_per_example(module, x, g)}
        if module.bias is not None:
            grads["bias"] = g.sum((2, 3))
        for k, v in grads.items():
            out[k] = out[k] + v if k in out else v
    return out
