"""Capture each trainable layer's input activations and output gradients during the user's backward.

A forward hook stores the layer input and registers a *tensor* hook on the layer output; the tensor
hook receives the gradient of the loss with respect to that output and pairs it with the stored
input. Tensor hooks (not ``register_full_backward_hook``) keep in-place activations such as
``nn.ReLU(inplace=True)`` working: the hook sees the gradient with respect to the output's value
before the in-place change, which is exactly the layer's output gradient.

Linear and Conv2d go further (book-keeping, Bu et al. 2023): while capturing, their forward runs
through a small autograd function whose backward returns only the input gradient and hands
``(input, output grad)`` to the capture. Autograd therefore never computes the (non-private) weight
gradient that DP-SGD would throw away; ``.grad`` of those parameters stays ``None`` until the DP
optimizer's ``step()`` writes the private gradient. LayerNorm does the same and hands over the
forward's saved mean and rstd with ``x``, so the per-example rule does not normalise again.

Positional embeddings shared by the whole batch (``pos_emb(arange(T))`` added to ``(B, T, C)``
token embeddings, as in GPT) have no batch dimension, so their output gradient is already summed over
examples. An Embedding whose input is 1-D while the model's input is at least 2-D, and whose ids are
either not batch-sized or a consecutive range, is treated as such a broadcast layer: its output is
expanded to ``(B, T, C)`` (numerically the same broadcast) so each example's gradient is captured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from types import MethodType
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from privlab.dp.layers import SUPPORTED_LAYERS, NormStats, per_example_grads
from privlab.errors import PrivacyViolationError, UnsupportedModuleError

Sink = Callable[..., None]  # (input, output grad) or, from a LayerNorm, (input, output grad, (mean, rstd))


class _LinearCapture(torch.autograd.Function):
    """y = x W^T + b; backward returns dL/dx only and sends (x, dL/dy) to the sink."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, sink: Sink) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.sink = sink
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        x, weight = ctx.saved_tensors
        ctx.sink(x, g)
        return (g @ weight if ctx.needs_input_grad[0] else None), None, None, None


class _Conv2dCapture(torch.autograd.Function):
    """2-D convolution whose backward returns dL/dx only and sends (x, dL/dy) to the sink."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, sink: Sink, conv: tuple[Any, ...]
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.sink, ctx.conv = sink, conv
        stride, padding, dilation = conv
        return F.conv2d(x, weight, bias, stride, padding, dilation, 1)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        x, weight = ctx.saved_tensors
        ctx.sink(x, g)
        gx = None
        if ctx.needs_input_grad[0]:
            stride, padding, dilation = ctx.conv
            gx = torch.ops.aten.convolution_backward(
                g, x, weight, None, stride, padding, dilation, False, [0, 0], 1, [True, False, False]
            )[0]
        return gx, None, None, None, None


class _LayerNormCapture(torch.autograd.Function):
    """LayerNorm whose backward returns dL/dx only and sends (x, dL/dy, (mean, rstd)) to the sink.

    The statistics are the ones the forward already computed, so the per-example rule neither
    recomputes the normalisation nor does autograd compute the non-private gain and bias gradients
    that DP-SGD would discard.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, sink: Sink,
        shape: tuple[int, ...], eps: float,
    ) -> torch.Tensor:
        out, mean, rstd = torch.native_layer_norm(x, shape, weight, bias, eps)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.sink, ctx.shape = sink, shape
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None, None]:
        x, weight, bias, mean, rstd = ctx.saved_tensors
        ctx.sink(x, g, (mean, rstd))
        gx = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.native_layer_norm_backward(
                g, x, ctx.shape, mean, rstd, weight, bias, [True, False, False]
            )[0]
        return gx, None, None, None, None, None


def _in_func_transform() -> bool:
    """Inside ``torch.func`` (vmap / grad)? Then this is not the user's backward: do not capture."""
    try:
        return torch._C._functorch.peek_interpreter_stack() is not None
    except AttributeError:  # pragma: no cover - older / newer torch without this API
        return False


def _captured_forward(capture: GradCapture, name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    cls_forward = type(module).forward
    # Captured whether or not the module is in training mode: eval() (dropout off) is legitimate for
    # DP training, and skipping the capture would leave a pure-noise update.
    if not (capture.enabled and torch.is_grad_enabled()) or _in_func_transform():
        return cls_forward(module, x)  # type: ignore[no-any-return]
    capture.calls_in_pass[name] = capture.calls_in_pass.get(name, 0) + 1
    sink = partial(capture._store, name, capture._call_tag())
    if isinstance(module, nn.LayerNorm):
        return _LayerNormCapture.apply(  # type: ignore[no-any-return]
            x, module.weight, module.bias, sink, tuple(module.normalized_shape), module.eps
        )
    if isinstance(module, nn.Conv2d):
        pad = (0, 0) if module.padding == "valid" else module.padding
        conv = (list(module.stride), list(pad), list(module.dilation))
        return _Conv2dCapture.apply(x, module.weight, module.bias, sink, conv)  # type: ignore[no-any-return]
    return _LinearCapture.apply(x, module.weight, module.bias, sink)  # type: ignore[no-any-return]


class GradCapture:
    """Hooks on every supported layer that owns trainable parameters.

    ``loss_reduction="mean"`` multiplies captured output gradients by the physical batch size so that
    they are gradients of each example's own loss. ``materialise(layer, act, grad)`` says whether to
    turn a call into per-example gradients at once (freeing the activations) or keep it for later.
    ``reduce(layer, act, grad, scale, stats)`` (used by per-layer clipping, whose factors depend
    on one layer only) turns a call into the layer's clipped sums during the backward pass, so nothing
    per-example outlives it; layers called more than once per forward pass are not reduced early,
    since their per-example gradient is the sum over calls.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_reduction: str = "mean",
        materialise: Callable[[nn.Module, torch.Tensor, torch.Tensor], bool] | None = None,
        reduce: Callable[[nn.Module, torch.Tensor, torch.Tensor, float, NormStats | None], dict[str, torch.Tensor]]
        | None = None,
    ) -> None:
        self.loss_reduction = loss_reduction
        self.materialise = materialise
        self.reduce = reduce
        self.summed: dict[str, dict[str, torch.Tensor]] = {}  # per layer, already reduced over examples
        self.calls_in_pass: dict[str, int] = {}
        self.no_early_reduce: set[str] = set()  # layers sharing a parameter with another layer
        self.kept: dict[str, dict[str, torch.Tensor]] = {}
        self.enabled = True
        self.layers: dict[str, nn.Module] = {}
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._handles: list[Any] = [model.register_forward_pre_hook(self._root_input, with_kwargs=True)]
        self._batch: tuple[int, int] | None = None  # (batch size, ndim) of the model's input
        self._backward_done = False  # a backward pass stored captures since the last step()/zero_grad()
        self._callback_queued = False
        self._patched: list[nn.Module] = []
        for name, module in model.named_modules():
            if isinstance(module, SUPPORTED_LAYERS) and any(p.requires_grad for p in module.parameters(recurse=False)):
                self.layers[name] = module
                if type(module) in (nn.Linear, nn.Conv2d, nn.LayerNorm) and "forward" not in vars(module):
                    module.forward = MethodType(partial(_captured_forward, self, name), module)  # type: ignore[method-assign]
                    self._patched.append(module)
                else:
                    self._handles.append(module.register_forward_hook(partial(self._forward, name)))

    def _root_input(self, module: nn.Module, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        first = next((t for t in (*inputs, *kwargs.values()) if isinstance(t, torch.Tensor)), None)
        self._batch = (int(first.shape[0]), first.dim()) if first is not None and first.dim() > 0 else None

    def _call_tag(self) -> tuple[int | None, bool]:
        """(batch size of the model input, forwarded after an already finished captured backward?)."""
        return (self._batch[0] if self._batch is not None else None), self._backward_done

    def _mark_backward_done(self) -> None:
        self._backward_done = True
        self._callback_queued = False

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
        if not (self.enabled and torch.is_grad_enabled() and output.requires_grad) or _in_func_transform():
            return None  # (captured in eval() mode too)
        self.calls_in_pass[name] = self.calls_in_pass.get(name, 0) + 1
        act = inputs[0].detach()
        replaced = None
        if self._batch is not None and self._is_broadcast(module, act):
            B = self._batch[0]
            act = act.expand(B, *act.shape)
            output = replaced = output.expand(B, *output.shape)  # same values; per-example grads
        output.register_hook(partial(self._store, name, self._call_tag(), act))
        return replaced

    def _check_call(self, name: str, tag: tuple[int | None, bool], act: torch.Tensor, g: torch.Tensor) -> None:
        batch, after_backward = tag
        if after_backward:
            raise PrivacyViolationError(
                f"A second backward pass (of a new forward pass) reached layer '{name}' before "
                "DPOptimizer.step(): per-example gradients of different batches would be mixed row by row. "
                "Call step() (or zero_grad()) after every backward(); for gradient accumulation use "
                "virtual batches (make_private(..., physical_batch_size=...)) instead."
            )
        if batch is None or batch == 0:
            return
        for what, t in (("input", act), ("output gradient", g)):
            if t.dim() == 0 or t.shape[0] != batch:
                lead = "a scalar" if t.dim() == 0 else f"leading dimension {t.shape[0]}"
                why = (
                    "its input has no per-example batch dimension (e.g. learned queries or positions of "
                    "shape (1, T, d) broadcast over the batch later), so its output gradient is already "
                    "summed over the examples and per-example gradients cannot be separated"
                    if t.dim() == 0 or t.shape[0] == 1
                    else "its input's leading dimension is not the batch (e.g. a (B*T, d) reshape), so "
                    "rows are not examples"
                )
                raise UnsupportedModuleError(
                    f"Layer '{name}' ({type(self.layers[name]).__name__}) was called on a tensor whose {what} "
                    f"has {lead} while the model's input batch has {batch} examples: {why}. Compute it "
                    "per example with a batch dimension, e.g. pos_emb(pos.unsqueeze(0).expand(B, -1)) or "
                    "proj(q.expand(B, -1, -1)) instead of pos_emb(pos[None]) / proj(q) broadcast "
                    "afterwards (expanding the OUTPUT, pos_emb(pos).expand(B, -1, -1), is still wrong), "
                    "keep the leading dimension the batch, or freeze the layer."
                )

    def _store(
        self, name: str, tag: tuple[int | None, bool], act: torch.Tensor, grad: torch.Tensor,
        stats: NormStats | None = None,
    ) -> None:
        """One call's (input, output grad), and a captured LayerNorm's forward ``stats`` (mean, rstd)."""
        act, g = act.detach(), grad.detach()
        self._check_call(name, tag, act, g)
        if not self._callback_queued:  # mark the end of this backward pass (see _check_call)
            torch.autograd.Variable._execution_engine.queue_callback(self._mark_backward_done)
            self._callback_queued = True
        if g.shape[0] == 0 or tag[0] == 0:  # an empty Poisson batch contributes nothing (the step still adds noise)
            return
        scale = float(g.shape[0]) if self.loss_reduction == "mean" else 1.0
        module = self.layers[name]
        if self.materialise is not None and self.materialise(module, act, g):
            # Per-example grads now, so (act, g) can be freed during the backward pass. The mean
            # loss's batch factor is applied inside (no scaled copy of g).
            once = self.calls_in_pass.get(name, 0) == 1 and name not in self.no_early_reduce
            if self.reduce is not None and once:
                grads, store = self.reduce(module, act, g, scale, stats), self.summed.setdefault(name, {})
            else:
                grads = per_example_grads(module, [(act, g)], scale, stats=stats)
                store = self.kept.setdefault(name, {})
            for k, v in grads.items():
                store[k] = store[k] + v if k in store else v
        else:
            self.calls.setdefault(name, []).append((act, g * scale if scale != 1.0 else g))

    def items(self) -> Iterator[tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]]:
        """(layer, captured (activation, output grad) calls, materialised per-example grads) per layer."""
        for name in {**self.kept, **self.calls}:
            yield self.layers[name], self.calls.get(name, []), self.kept.get(name, {})

    def reduced_items(self) -> Iterator[tuple[nn.Module, dict[str, torch.Tensor]]]:
        """(layer, ``reduce``-d sums) for every layer reduced during the backward pass."""
        for name, sums in self.summed.items():
            yield self.layers[name], sums

    def clear(self) -> None:
        self.calls, self.kept, self.summed, self.calls_in_pass = {}, {}, {}, {}
        self._backward_done = False

    def remove(self) -> None:
        """Detach every hook (the model is left as it was)."""
        for h in self._handles:
            h.remove()
        for m in self._patched:
            del m.forward
        self._handles, self._patched = [], []
        self.clear()
