"""Gradients of K stacked MLPs by hand-written batched matrix products (``torch.bmm``), no autograd.

For small fully connected models on a CPU, ``vmap(functional_call)`` plus autograd spends more
time dispatching operators than multiplying matrices; this kernel computes the same gradients with
about fifteen operators per step for all K models together. It applies to ``nn.Sequential`` chains
(or :class:`privlab.models.MLP`) of ``Flatten``, ``Linear``, ``ReLU``, ``Tanh`` and ``Identity``
that end in a ``Linear`` and have no buffers (exactly these classes: a subclass may override
``forward``; no module hooks); other models use the ``vmap`` path.

Per model (inputs ``a_0`` of shape (B, D), layer ``l`` with weight ``W_l`` (out, in) and bias
``b_l``; all K models at once with a leading K dimension):

* forward: ``z_l = a_{l-1} W_l^T + b_l`` (``baddbmm``; for a layer of fewer than ``NARROW`` outputs
  as ``z_l^T = W_l a_{l-1}^T + b_l``), ``a_l = act(z_l)``;
* loss: mean cross-entropy over the batch, so ``dL/dz_L = (softmax(z_L) - onehot(y)) / B`` (the
  kernel carries ``B dL/dz`` backwards and applies the ``1/B`` as the products' ``alpha``);
* backward: ``dW_l = dz_l^T a_{l-1}``, ``db_l = sum_b dz_l``, ``dz_{l-1} = (dz_l W_l) * act'``,
  with ``relu' = 1[a > 0]`` and ``tanh' = 1 - a^2`` (both read from the activation ``a``).

The K models share no parameters, so row k of each gradient is model k's own gradient, equal to
the plain loop's up to floating-point summation order. With ``clip``, each example's gradient is
clipped first (DP-SGD-style reference models; see :func:`mlp_grads`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules import module as module_impl

from privlab.dp import mechanism
from privlab.models.vision import MLP

_ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}
# A layer with fewer outputs than this (a classifier head) is run in the other orientation: weights
# stored (K, out, in), the forward as z^T = W a^T and the weight gradient as dz^T a, so that the
# batched products' output rows are long. Forward plus weight gradient, K = 20, B = 32
# (benchmarks/mia/ab_orientation.py, results/ab_orientation.json): 3.1-5.0x faster this way for
# 2-10 outputs; equal (0.97-1.00x) at 16, 32 and 64 outputs; 1.1-1.4x faster at 20, 24 and 100
# outputs, which keep the (K, in, out) layout all the same (the input-gradient product is not measured).
NARROW = 16


def is_narrow(out_features: int) -> bool:
    """Whether a layer of ``out_features`` outputs runs in the head's orientation (see ``NARROW``)."""
    return out_features < NARROW


def _product(m1: torch.Tensor, m2: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``m1 m2 (+ bias)`` per model: ``bmm``, or ``baddbmm`` with the bias broadcast."""
    return torch.bmm(m1, m2) if bias is None else torch.baddbmm(bias, m1, m2)


@dataclass(frozen=True)
class DenseLayer:
    """One Linear layer of the chain: parameter names, sizes and the activation applied after it."""

    weight: str
    bias: str | None
    in_features: int
    activation: str | None  # "relu", "tanh" or None (no activation; the last layer)


def _has_hooks(model: nn.Module) -> bool:
    """Whether a module hook (which the hand-written kernel would skip) can run in ``model``'s forward or backward."""
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    if any(getattr(module_impl, f"_global{n}", None) for n in names):
        return True
    return any(getattr(m, n, None) for m in model.modules() for n in names)


def mlp_plan(model: nn.Module, input_ndim: int = 2) -> list[DenseLayer] | None:
    """The chain of dense layers of ``model``, or None when the hand-written kernel does not apply.

    ``input_ndim``: dimensions of a batch of inputs (B, ...); above 2, the chain must start with a
    ``Flatten`` (without one, ``Linear`` would act on the last dimension only).
    """
    if next(model.buffers(), None) is not None or _has_hooks(model):
        return None
    seq, prefix = model, ""
    if not (isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward):
        children = list(model.named_children())
        # privlab.models.MLP, whose forward only calls its Sequential ``net`` (not a subclass's forward).
        if type(model).forward is not MLP.forward or len(children) != 1 or children[0][0] != "net":
            return None
        seq, prefix = children[0][1], "net."
    if not isinstance(seq, nn.Sequential) or type(seq).forward is not nn.Sequential.forward:
        return None
    layers: list[DenseLayer] = []
    seen_linear: set[int] = set()
    flattened = False
    # ``_modules``, not ``named_children()``: the latter skips a module object's repeated entries
    # (e.g. one ReLU instance used after every Linear), which Sequential.forward does call.
    for i, (name, module) in enumerate(seq._modules.items()):
        kind = type(module)  # exact types: a subclass may override forward
        if kind is nn.Flatten:
            if i != 0 or module.start_dim != 1 or module.end_dim != -1:  # type: ignore[union-attr]
                return None
            flattened = True
        elif kind is nn.Identity:
            continue
        elif kind is nn.Linear:
            assert isinstance(module, nn.Linear)
            if id(module) in seen_linear:
                return None  # one layer applied twice (shared weights)
            seen_linear.add(id(module))
            layers.append(
                DenseLayer(
                    f"{prefix}{name}.weight",
                    None if module.bias is None else f"{prefix}{name}.bias",
                    module.in_features,
                    None,
                )
            )
        elif kind in _ACTIVATIONS:
            if not layers or layers[-1].activation is not None:
                return None  # activation first, or two in a row
            last = layers[-1]
            layers[-1] = DenseLayer(last.weight, last.bias, last.in_features, _ACTIVATIONS[kind])
        else:
            return None
    if not layers or layers[-1].activation is not None or (input_ndim != 2 and not flattened):
        return None
    expected = {n for layer in layers for n in (layer.weight, layer.bias) if n is not None}
    names = [n for n, _ in model.named_parameters()]
    if len(names) != len(expected) or set(names) != expected:
        return None  # extra, re-registered or parametrized parameters
    return layers


def mlp_grads(
    plan: list[DenseLayer],
    params: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    out: dict[str, torch.Tensor],
    beta: float = 0.0,
    clip: float | None = None,
) -> dict[str, torch.Tensor]:
    """``out[name] <- beta * out[name] + grad[name]`` for each model's mean cross-entropy on its batch.

    ``x``: (K, B, D) inputs (flattened), ``y``: (K * B,) int64 labels in model-major order, ``out``:
    preallocated tensors shaped like ``params``. ``beta = 0`` writes plain gradients (``out`` may hold
    garbage); ``beta = mu`` with ``out`` = SGD momentum buffers folds ``b <- mu b + g`` into the
    weight-gradient products (``baddbmm``), saving one pass over the parameters per step.

    ``clip = C`` replaces the mean gradient by the mean of per-example gradients clipped to norm C
    (flat over all layers; factors from :func:`privlab.dp.mechanism.clip_factors`, the rule DP-SGD uses).
    The kernel propagates ``dz = B dL/dz`` (each example's own loss gradient; the 1/B of the mean is the
    ``alpha`` of the weight-gradient products), so example i's gradient of layer l is ``dz_li a_li^T`` and
    ``||g_i||^2 = sum_l ||dz_li||^2 (||a_li||^2 + [bias])`` (the rank-one norm identity, exact for 2-D
    inputs); the clipped mean is one product per layer with ``dz`` scaled by the factors.
    """
    K, B, _ = x.shape
    acts = [x]  # a_0 .. a_{L-1}: the inputs of each layer
    z = x
    class_dim = 2  # the classes' dimension of the last layer's output z (1 when it is stored as z^T)
    for i, layer in enumerate(plan):
        w = params[layer.weight]  # (K, out, in)
        b = None if layer.bias is None else params[layer.bias]  # (K, out)
        if is_narrow(w.shape[1]):  # z^T = W a^T (K, out, B), used through its (K, B, out) view
            z = _product(w, acts[-1].transpose(1, 2), None if b is None else b.unsqueeze(2))
            class_dim = 1
        else:
            z = _product(acts[-1], w.transpose(1, 2), None if b is None else b.unsqueeze(1))  # (K, B, out)
            class_dim = 2
        if layer.activation == "relu":
            z = z.clamp_min_(0)
        elif layer.activation == "tanh":
            z = z.tanh_()
        if class_dim == 1:
            z = z.transpose(1, 2)
        if i + 1 < len(plan):
            acts.append(z)
    # B dL/dz = softmax(z) - onehot(y), over the classes of the stored (contiguous) layout; the 1/B of the
    # mean is applied as the ``alpha`` of the weight-gradient products (exact for a power-of-two B).
    stored = z if class_dim == 2 else z.transpose(1, 2)
    probs = torch.softmax(stored, class_dim)
    shape = (K, B, 1) if class_dim == 2 else (K, 1, B)
    probs.scatter_add_(class_dim, y.view(shape).long(), torch.full((1, 1, 1), -1.0, dtype=x.dtype).expand(shape))
    dz = probs if class_dim == 2 else probs.transpose(1, 2)  # (K, B, C), scaled by B
    scale = 1.0 / B
    dzs: list[torch.Tensor] = []  # with clip: output gradients of layers L-1 .. 0, kept for the factors
    for i in range(len(plan) - 1, -1, -1):
        if clip is None:  # no factors to wait for: write this layer now, so dz is freed early
            _write_layer(plan[i], dz, acts[i], out, beta, scale)
        else:
            dzs.append(dz)
        if i == 0:
            break
        da = torch.bmm(dz, params[plan[i].weight])  # (K, B, in)
        act = plan[i - 1].activation
        if act == "relu":
            dz = torch.ops.aten.threshold_backward(da, acts[i], 0)
        elif act == "tanh":
            dz = da.mul_(1 - acts[i] * acts[i])
        else:
            dz = da
    if clip is not None:
        layers = list(range(len(plan) - 1, -1, -1))
        sq = torch.zeros(K, B, dtype=x.dtype, device=x.device)
        for i, dz_i in zip(layers, dzs, strict=True):
            sq += dz_i.square().sum(-1) * (acts[i].square().sum(-1) + (plan[i].bias is not None))
        factors = mechanism.clip_factors(sq.sqrt_(), clip).unsqueeze(-1)  # (K, B, 1); dz already carries B
        for i, dz_i in zip(layers, dzs, strict=True):
            _write_layer(plan[i], dz_i * factors, acts[i], out, beta, scale)
    return out


def transposed_layout(plan: list[DenseLayer], params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``params`` with each stacked weight (K, out, in) stored as (K, in, out) (the same values, other strides).

    :func:`mlp_grads` accepts either layout. In this one the forward multiplies by ``W^T`` as a contiguous
    matrix and the weight gradient is written as ``a^T dz`` (K, in, out), which MKL's batched products run
    ~1.5x faster than ``dz^T a`` for 64 MLP(784-64-10) on one thread (5-13% of a whole training step; see
    ``benchmarks/mia/README.md``); buffers made by ``torch.empty_like`` / ``zeros_like`` inherit the layout.
    Layers with fewer than ``NARROW`` outputs keep (K, out, in): see ``NARROW``.
    """
    weights = {layer.weight for layer in plan if not is_narrow(params[layer.weight].shape[1])}
    return {k: v.transpose(1, 2).contiguous().transpose(1, 2) if k in weights else v for k, v in params.items()}


def _write_layer(
    layer: DenseLayer,
    dz: torch.Tensor,
    a_prev: torch.Tensor,
    out: dict[str, torch.Tensor],
    beta: float,
    scale: float,
) -> None:
    """``out <- beta * out + scale * (dz^T a, sum_b dz)`` for one layer's weight and bias."""
    w = out[layer.weight]  # (K, out, in)
    if w.transpose(1, 2).is_contiguous():  # stored (K, in, out): see transposed_layout
        w.transpose(1, 2).baddbmm_(a_prev.transpose(1, 2), dz, beta=beta, alpha=scale)
    else:
        w.baddbmm_(dz.transpose(1, 2), a_prev, beta=beta, alpha=scale)
    if layer.bias is not None:
        bias = out[layer.bias]  # (K, out)
        if beta:
            bias.mul_(beta).add_(dz.sum(1), alpha=scale)
        else:
            torch.sum(dz, 1, out=bias).mul_(scale)


def fold_first_bias(
    plan: list[DenseLayer], params: dict[str, torch.Tensor]
) -> tuple[list[DenseLayer], dict[str, torch.Tensor]] | None:
    """The first layer's bias as one more input column: ``z = [a, 1] [W, b]^T``, or None where it does not apply.

    Returns the plan with a bias-free first layer of ``in + 1`` inputs and ``params`` with its weight and
    bias replaced by one (K, out, in + 1) tensor stored (K, in + 1, out) (the bias is its last input row).
    The caller appends a column of ones to the inputs. The forward then needs no broadcast copy of the
    bias, the bias gradient is the last row of the weight-gradient product, and the optimizer steps one
    tensor fewer: ~4 operators per step. Applies to a first layer with a bias that is not narrow
    (see ``NARROW``). Undo with :func:`unfold_first_bias`.
    """
    first = plan[0]
    w = params[first.weight]  # (K, out, in)
    if first.bias is None or is_narrow(w.shape[1]):
        return None
    K, n_out, n_in = w.shape
    store = torch.empty(K, n_in + 1, n_out, dtype=w.dtype, device=w.device)
    store[:, :n_in] = w.transpose(1, 2)
    store[:, n_in] = params[first.bias]
    folded = {k: v for k, v in params.items() if k not in (first.weight, first.bias)}
    folded[first.weight] = store.transpose(1, 2)
    return [DenseLayer(first.weight, None, n_in + 1, first.activation), *plan[1:]], folded


def unfold_first_bias(
    plan: list[DenseLayer], folded: dict[str, torch.Tensor], names: list[str]
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`fold_first_bias` (``plan`` is the original one), with the keys in the order ``names``."""
    first = plan[0]
    w = folded[first.weight]  # (K, out, in + 1)
    assert first.bias is not None
    parts = {**folded, first.weight: w[:, :, :-1], first.bias: w[:, :, -1]}
    return {k: parts[k] for k in names}
