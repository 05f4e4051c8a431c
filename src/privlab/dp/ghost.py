"""Ghost / book-keeping clipping: per-example norms and the clipped sum without per-example gradients.

For a Linear/Conv2d layer with per-example activations ``A_i`` (T x d) and output gradients ``G_i``
(T x p), the per-example weight gradient is ``G_i^T A_i`` and (Li et al. 2021, "Large Language Models
Can Be Strong Differentially Private Learners", ghost norm)::

    ||G_i^T A_i||_F^2 = <A_i A_i^T, G_i G_i^T>_F          cost B T^2 (p + d), memory B T^2

Once the clipping factors ``c_i = min(1, C / ||g_i||)`` are known, the clipped sum is one weight-gradient
product with per-example weights (book-keeping, Bu et al. 2023, "Differentially Private Optimization
on Large Model at Small Cost")::

    sum_i c_i G_i^T A_i = (c * G)^T A

Routing per layer ("mixed ghost norm", Bu et al. 2023): when ``p d <= T (p + d)`` the per-example
gradients are no larger than the activation and output gradient they come from, so they are
materialised during the backward pass (freeing both), give the norm, and are reused for the clipped
sum (``tensordot(c, dW)``); otherwise (then ``p d > 4 T^2``) the ghost norm is followed by the
book-keeping product. Embeddings use
``||dE_i||^2 = sum_{t,s} [id_t = id_s] g_t . g_s`` or, when V <= T, a kept ``(B, V, d)``.
LayerNorm / GroupNorm / RMSNorm gradients are small and always kept.

Tied weights (one parameter ``W`` used by several layers, e.g. a language model's token embedding
and its output head): example i's gradient is the sum of every layer's part, each a sum of rank-one
terms ``u_t v_t^T`` in ``W``'s (rows, cols) shape (a Linear/Conv call: ``u`` = output grad,
``v`` = input; an Embedding call: ``u`` = one-hot(id), ``v`` = output grad). Stacking all terms as
``U_i`` (T x rows) and ``V_i`` (T x cols)::

    ||sum_t u_t v_t^T||_F^2 = <U_i U_i^T, V_i V_i^T>_F

where ``U U^T`` between an output grad ``g_t`` and a one-hot is the gather ``g_t[id_s]``, and between
two one-hots ``[id_t = id_s]`` (:func:`tied_squared_norms`): the joint norm without materialising a
(B, V, d) gradient. The clipped sum is each layer's book-keeping product, added up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from privlab.dp import layers as L
from privlab.dp.clipping import squared_norms

Calls = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class LayerPlan:
    """What the norm pass left for the clipped-sum pass of one layer."""

    module: nn.Module
    cap: L.MatmulCapture | None = None
    kept: dict[str, torch.Tensor] = field(default_factory=dict)  # materialised (B, *shape) grads


def _gram(x: torch.Tensor) -> torch.Tensor:
    """``x x^T`` per example, (B, T, T).

    A squared norm computed as ``<A A^T, G G^T>`` is a sum of products of either sign, so rounding
    can leave a zero norm slightly below 0. Every such sum in this module is clamped at 0, so that
    its square root is never NaN.
    """
    return torch.bmm(x, x.transpose(1, 2))


def keep_per_example(module: nn.Module, act: torch.Tensor, grad: torch.Tensor) -> bool:
    """Materialise this call's per-example grads now? Yes when they are no larger than (act, grad)."""
    if isinstance(module, L.NORM_LAYERS):
        return True
    if isinstance(module, nn.Embedding):
        T = act[0].numel()
        return module.num_embeddings <= T
    w = module.weight
    if not isinstance(w, torch.Tensor):  # pragma: no cover - validation refuses such modules
        return True
    p, d = w.shape[0], w[0].numel()
    T = grad[0].numel() // p  # positions (sequence length, or output pixels of a convolution)
    if isinstance(module, nn.Conv2d):  # the ghost route would itself unfold T x d patches per example
        return p * d <= 2 * T * (p + d)
    return T > 1 and p * d <= T * (p + d)


def norms(
    module: nn.Module, calls: Calls, kept: dict[str, torch.Tensor], *, weight_norm: bool = True
) -> tuple[dict[str, torch.Tensor], LayerPlan]:
    """Per-example squared norms ``{local param name: (B,)}`` and the plan for :func:`clipped_sum`.

    ``kept`` holds per-example grads already materialised during the backward pass (see
    :func:`keep_per_example`); ``calls`` the (activation, output grad) pairs of the other calls.
    ``weight_norm=False`` (a tied weight, whose norm :func:`tied_squared_norms` computes jointly)
    leaves the weight's norm out and keeps its capture for the clipped sum.
    """
    if kept and calls:  # mixed calls of one layer: materialise the rest so the norm covers the sum
        kept = dict(kept)
        for k, v in L.per_example_grads(module, calls).items():
            kept[k] = kept[k] + v if k in kept else v
        calls = []
    if not calls:
        return {k: squared_norms(v) for k, v in kept.items()}, LayerPlan(module, kept=kept)
    cap = L.matmul_capture(module, calls)
    B, T, p = cap.g.shape
    plan = LayerPlan(module, cap)
    sq: dict[str, torch.Tensor] = {}
    if not weight_norm:
        if getattr(module, "bias", None) is not None and not cap.embedding:
            plan.kept["bias"] = cap.g.sum(1)
            sq["bias"] = squared_norms(plan.kept["bias"])
        return sq, plan
    if cap.embedding:
        same = (cap.a.unsqueeze(2) == cap.a.unsqueeze(1)).to(cap.g.dtype)  # (B, T, T)
        sq["weight"] = (same * _gram(cap.g)).sum((1, 2)).clamp_(min=0)  # rounding: see _gram
        return sq, plan
    d = cap.a.shape[-1]
    if T == 1:
        sq["weight"] = cap.a.pow(2).sum((1, 2)) * cap.g.pow(2).sum((1, 2))
    elif p * d < 2 * T * T:
        sq["weight"] = squared_norms(torch.bmm(cap.g.transpose(1, 2), cap.a))  # (B, p, d) then discarded
    else:
        sq["weight"] = (_gram(cap.a) * _gram(cap.g)).sum((1, 2)).clamp_(min=0)  # rounding: see _gram
    if getattr(module, "bias", None) is not None:
        plan.kept["bias"] = cap.g.sum(1)  # (B, p)
        sq["bias"] = squared_norms(plan.kept["bias"])
    return sq, plan


def tied_squared_norms(caps: list[L.MatmulCapture]) -> torch.Tensor:
    """``(B,)`` squared norms of one tied weight's per-example gradient, summed over the layers using it.

    Each capture is one layer's calls in canonical form (Linear/Conv: ``a`` (B, T, cols), ``g`` (B, T, rows);
    Embedding: ids ``a`` (B, T), ``g`` (B, T, cols)); see the module docstring for the identity.
    """
    rows: list[tuple[bool, torch.Tensor]] = [(c.embedding, c.a if c.embedding else c.g) for c in caps]
    cols = torch.cat([c.g if c.embedding else c.a.flatten(2) for c in caps], 1)  # (B, T_all, cols)
    blocks = []
    for ids_i, r_i in rows:
        line = []
        for ids_j, r_j in rows:
            if ids_i and ids_j:
                line.append((r_i.unsqueeze(2) == r_j.unsqueeze(1)).to(cols.dtype))
            elif ids_j:  # g_t[id_s]
                line.append(torch.gather(r_i, 2, r_j.unsqueeze(1).expand(-1, r_i.shape[1], -1)))
            elif ids_i:
                line.append(torch.gather(r_j, 2, r_i.unsqueeze(1).expand(-1, r_j.shape[1], -1)).transpose(1, 2))
            else:
                line.append(torch.bmm(r_i, r_j.transpose(1, 2)))
        blocks.append(torch.cat(line, 2))
    return (torch.cat(blocks, 1) * _gram(cols)).sum((1, 2)).clamp_(min=0)  # rounding: see _gram


def clipped_sum(plan: LayerPlan, factors: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{local param name: sum_i factors_i grad_i}`` for the layer of ``plan``."""
    out = {k: torch.tensordot(factors.to(v.dtype), v, dims=1) for k, v in plan.kept.items()}
    cap, module = plan.cap, plan.module
    if cap is None or "weight" in out:
        return out
    gw = cap.g * factors.to(cap.g.dtype).view(-1, 1, 1)  # (B, T, p)
    if cap.embedding and isinstance(module, nn.Embedding):
        d = gw.shape[-1]
        out["weight"] = torch.zeros(module.num_embeddings, d, dtype=gw.dtype, device=gw.device).index_add_(
            0, cap.a.reshape(-1), gw.reshape(-1, d)
        )
        return out
    p, d = gw.shape[-1], cap.a.shape[-1]
    out["weight"] = (gw.reshape(-1, p).t() @ cap.a.reshape(-1, d)).reshape(L._weight_shape(module))
    return out
