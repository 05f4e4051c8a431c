"""Capture each trainable layer's input activations and output gradients during the user's backward.

A forward hook stores the layer input and registers a *tensor* hook on the layer output; the tensor
hook receives the gradient of the loss with respect to that output and pairs it with the stored
input. Tensor hooks (not ``register_full_backward_hook``) keep in-place activations such as
``nn.ReLU(inplace=True)`` working: the hook sees the gradient with respect to the output's value
before the in-place change, which is exactly the layer's output gradient.

Positional embeddings shared by the whole batch (``pos_emb(arange(T))`` added to ``(B, T, C)``
token embeddings, as in GPT) have no batch dimension, so their output gradient is already summed over
examples. An Embedding whose input is 1-D while the model's input is at least 2-D, and whose ids are
either not batch-sized or a consecutive range, is treated as such a broadcast layer: its output is
expanded to ``(B, T, C)`` (numerically the same broadcast) so each example's gradient is captured.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from torch import nn

from privlab.dp.layers import SUPPORTED_LAYERS


class GradCapture:
    """Hooks on every supported layer that owns trainable parameters.

    ``loss_reduction="mean"`` multiplies captured output gradients by the physical batch size so that
    they are gradients of each example's own loss.
    """

    def __init__(self, model: nn.Module, loss_reduction: str = "mean") -> None:
        self.loss_reduction = loss_reduction
        self.enabled = True
        self.layers: dict[str, nn.Module] = {}
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._handles: list[Any] = [model.register_forward_pre_hook(self._root_input)]
        self._batch: tuple[int, int] | None = None  # (batch size, ndim) of the model's input
        for name, module in model.named_modules():
            if isinstance(module, SUPPORTED_LAYERS) and any(
                p.requires_grad for p in module.parameters(recurse=False)
            ):
                self.layers[name] = module
                self._handles.append(module.register_forward_hook(partial(self._forward, name)))

    def _root_input(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        first = inputs[0] if inputs else None
        if isinstance(first, torch.Tensor) and first.dim() > 0:
            self._batch = (int(first.shape[0]), first.dim())

    def _is_broadcast(self, module: nn.Module, ids: torch.Tensor) -> bool:
        if not isinstance(module, nn.Embedding) or ids.dim() != 1 or self._batch is None:
            return False
        B, ndim = self._batch
        if ndim < 2:
            return False
        consecutive = ids.numel() > 1 and bool((ids[1:] - ids[:-1] == 1).all())
        return ids.shape[0] != B or consecutive

    def _forward(
        self, name: str, module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor
    ) -> torch.Tensor | None:
        if not (self.enabled and module.training and torch.is_grad_enabled() and output.requires_grad):
            return None
        act = inputs[0].detach()
        replaced = None
        if self._batch is not None and self._is_broadcast(module, act):
            B = self._batch[0]
            act = act.expand(B, *act.shape)
            output = replaced = output.expand(B, *output.shape)  # same values; per-example grads
        output.register_hook(partial(self._backward, name, act))
        return replaced

    def _backward(self, name: str, act: torch.Tensor, grad: torch.Tensor) -> None:
        g = grad.detach()
        if g.shape[0] == 0:  # an empty Poisson batch contributes nothing (the step still adds noise)
            return
        if self.loss_reduction == "mean":
            g = g * g.shape[0]
        self.calls.setdefault(name, []).append((act, g))

    def items(self) -> Iterator[tuple[str, nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """(layer name, layer, captured calls) for every layer that saw a backward pass."""
        for name, calls in self.calls.items():
            yield name, self.layers[name], calls

    def batch_size(self) -> int | None:
        """Physical batch size of the captured pass (None when nothing was captured)."""
        for calls in self.calls.values():
            return int(calls[0][1].shape[0])
        return None

    def clear(self) -> None:
        self.calls = {}

    def remove(self) -> None:
        """Detach every hook (the model is left as it was)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.clear()
