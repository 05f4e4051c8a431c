"""Per-example gradients of any module with ``torch.func`` (``functional_call`` + ``vmap`` + ``grad``).

For a loss ``l(theta; x_i, y_i)``, ``vmap(grad(l), in_dims=(None, 0, 0))`` evaluates
``nabla_theta l(theta; x_i, y_i)`` for every i in one vectorised pass (the JAX-style per-example
gradient, see also Opacus' functorch mode). This path works for any layer ``torch.func`` can
differentiate, but materialises ``(B, *param.shape)`` for every parameter.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def per_sample_gradients(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """``{name: (B, *param.shape)}``: the gradient of ``loss_fn(model(x_i[None]), y_i[None])`` for each i.

    Only parameters with ``requires_grad`` are differentiated; buffers are passed unchanged.
    ``loss_fn`` is evaluated on a batch of one, so its reduction ("mean" or "sum") does not matter.
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, frozen, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    if x.shape[0] == 0:
        return {n: p.new_zeros((0, *p.shape)) for n, p in params.items()}
    result: dict[str, torch.Tensor] = vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)(params, x, y)
    return result
