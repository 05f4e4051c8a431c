"""Train a chunk of K same-architecture models in one batched pass per step.

The K models' parameters are stacked into (K, ...) tensors (``stack_module_state``); each step,
every model draws its own batch from its own IN set, giving inputs (K, B, ...), and one batched
pass gives the K per-model gradients: hand-written ``bmm`` products for plain MLPs
(:mod:`privlab.train.stacked_mlp`), otherwise a ``vmap``-ed ``functional_call`` (``torch.func``)
and one backward pass through it; the functional optimizer in
:mod:`privlab.train.optim` then updates all K models element-wise. The random numbers are those of
:func:`privlab.train.train_model` applied to each model alone (see :mod:`privlab.train.sampling`),
so both paths reach the same parameters up to floating-point reassociation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from privlab._validation import check_choice
from privlab.dp import mechanism
from privlab.errors import InvalidParameterError
from privlab.train import optim
from privlab.train.config import TrainConfig
from privlab.train.sampling import index_stream, init_model, noise_generator, num_steps
from privlab.train.stacked_mlp import (
    DenseLayer,
    fold_first_bias,
    mlp_grads,
    mlp_plan,
    transposed_layout,
    unfold_first_bias,
)


def _streams(mask: np.ndarray, seeds: Sequence[int], cfg: TrainConfig) -> tuple[torch.Tensor, list[int]]:
    """(K, T, B) global example indices per model and step, and each model's own step count."""
    rows, steps = [], []
    for row, seed in zip(mask, seeds, strict=True):
        members = torch.as_tensor(np.flatnonzero(row), dtype=torch.long)
        t_k = num_steps(len(members), cfg.epochs, cfg.batch_size)
        rows.append(members[index_stream(len(members), t_k, cfg.batch_size, seed)])  # (T_k, B)
        steps.append(t_k)
    t_max = max(steps)
    padded = [torch.cat([r, r[-1:].expand(t_max - len(r), -1)]) if len(r) < t_max else r for r in rows]
    return torch.stack(padded), steps


KERNELS = ("auto", "vmap", "mlp")
GradFn = Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def _vmap_grads(model: nn.Module, buffers: dict[str, torch.Tensor]) -> GradFn:
    """Gradients through ``vmap(functional_call)`` and one autograd pass (any architecture)."""
    base = copy.deepcopy(model).to("meta")
    base.train()

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (xb,))  # (B, ...) -> (B, C)

    batched = vmap(forward)  # (K, B, ...) -> (K, B, C)

    def grads(params: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> dict[str, torch.Tensor]:
        leaves = {k: v.requires_grad_() for k, v in params.items()}
        logits = batched(leaves, buffers, xb)  # (K, B, C)
        # Sum over models of each model's mean loss: the models share no parameters, so the gradient
        # with respect to row k of a stacked tensor is exactly model k's own gradient.
        loss = F.cross_entropy(logits.flatten(0, 1), yb, reduction="sum") / xb.shape[1]
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))

    return grads


def _labels_fit(y: torch.Tensor, mask: np.ndarray, n_classes: int) -> bool:
    """Whether every label the models train on is a class index in ``range(n_classes)`` of a dtype
    ``F.cross_entropy`` takes (int64 or uint8), so the hand-written kernel's one-hot equals its loss."""
    if y.dim() != 1 or y.dtype not in (torch.int64, torch.uint8):
        return False
    used = y[torch.as_tensor(mask.any(0))]
    return used.numel() == 0 or (int(used.min()) >= 0 and int(used.max()) < n_classes)


def _kernel_plan(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: np.ndarray) -> list[DenseLayer] | None:
    """The stacked-MLP plan for ``model`` on these inputs and labels, or None (then the ``vmap`` kernel)."""
    plan = mlp_plan(model, input_ndim=x.dim())
    n_classes = dict(model.named_parameters())[plan[-1].weight].shape[0] if plan is not None else 0
    if plan is not None and not _labels_fit(y, mask, n_classes):
        return None  # soft, out-of-range or non-int64/uint8 labels: cross_entropy's own handling (or error)
    return plan


def can_train_private(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: np.ndarray) -> bool:
    """Whether :func:`train_chunk` can train such models DP-SGD-style (``mlp`` kernel, all parameters trainable)."""
    return _kernel_plan(model, x, y, mask) is not None and all(p.requires_grad for p in model.parameters())


def train_chunk(
    model_factory: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    mask: np.ndarray,
    seeds: Sequence[int],
    cfg: TrainConfig,
    *,
    progress: bool = False,
    desc: str = "ensemble",
    kernel: str = "auto",
) -> dict[str, torch.Tensor]:
    """Stacked trained state {name: (K, ...)} of K models; model k trains on ``x[mask[k]]`` with ``seeds[k]``.

    ``kernel``: ``"mlp"`` (hand-written batched products, :mod:`privlab.train.stacked_mlp`; Linear +
    ReLU/Tanh chains only, with class-index labels), ``"vmap"`` (any model) or ``"auto"`` (``"mlp"``
    where it applies). Parameters with ``requires_grad=False`` stay at their initial values, as in
    :func:`privlab.train.train_model` (whose optimizer only holds the trainable ones).
    """
    check_choice(kernel, "kernel", "train_chunk", KERNELS)
    models = [init_model(model_factory, s) for s in seeds]
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    plan = _kernel_plan(models[0], x, y, mask) if kernel != "vmap" else None
    if kernel == "mlp" and plan is None:
        raise InvalidParameterError(
            "The 'kernel' parameter of train_chunk is 'mlp', which needs an nn.Sequential (or privlab MLP) of "
            "Flatten/Linear/ReLU/Tanh ending in Linear, without buffers or hooks (a leading Flatten for inputs "
            "of more than 2 dimensions), and int64/uint8 class labels in range. "
            f"Got {type(models[0]).__name__}; use 'auto'."
        )
    trainable = [k for k, p in models[0].named_parameters() if p.requires_grad]
    if cfg.private and (plan is None or len(trainable) != len(params)):
        raise InvalidParameterError(
            "The 'cfg' parameter of train_chunk asks for DP-SGD-style training (max_grad_norm > 0), which the "
            "vectorised ensemble does only with the 'mlp' kernel and every parameter trainable. "
            f"Got {type(models[0]).__name__} (kernel {kernel!r}); train it with backend='loop'."
        )
    grad_fn = None if plan is not None else _vmap_grads(models[0], buffers)
    streams, steps = _streams(mask, seeds, cfg)  # (K, T, B)
    streams = streams.transpose(0, 1).contiguous()  # (T, K, B): one contiguous block per step
    t_all = min(steps)
    leaves = {k: v.detach().clone() for k, v in params.items()}
    names = list(leaves)
    if plan is not None:
        leaves = transposed_layout(plan, leaves)  # state and buffers below inherit the layout
    # The first layer's bias as an input column of ones (not with DP-SGD-style noise, drawn per parameter tensor).
    folded = None
    if plan is not None and not cfg.private and all(k in trainable for k in (plan[0].weight, plan[0].bias)):
        folded = fold_first_bias(plan, leaves)
    original_plan = plan
    if folded is not None:
        plan, leaves = folded
        trainable = [k for k in trainable if k in leaves]
    state = optim.init_state(leaves, cfg)
    # The optimizer sees the trainable parameters only (the same tensor objects as in leaves and state).
    if not trainable:  # train_model's torch.optim refuses an empty parameter list too
        raise InvalidParameterError(
            f"The 'model_factory' parameter of train_chunk must build a model with a trainable parameter. "
            f"Got a {type(models[0]).__name__} whose parameters all have requires_grad=False."
        )
    opt_params = {k: leaves[k] for k in trainable}
    opt_state = {key: {k: s[k] for k in trainable} for key, s in state.items()}
    x_flat = x.reshape(x.shape[0], -1).contiguous()  # (N, D): index_select of rows is much cheaper than x[idx]
    if plan is not None:
        grad_buf = {k: torch.empty_like(v) for k, v in leaves.items()}
        x_buf = torch.empty(streams.shape[1] * streams.shape[2], plan[0].in_features, dtype=x_flat.dtype)
        if folded is not None:
            x_buf[:, -1] = 1.0  # the bias column; each step gathers into the columns before it
        x_rows = x_buf[:, : x_flat.shape[1]]
    fold = plan is not None and optim.folds_momentum(cfg) and not cfg.private
    clip = cfg.max_grad_norm if cfg.private else None
    gens = [noise_generator(s) for s in seeds] if cfg.private else []
    noise_std = cfg.noise_multiplier * cfg.max_grad_norm / cfg.batch_size  # on the mean gradient
    for t in tqdm(range(streams.shape[0]), disable=not progress, desc=desc, leave=False):
        idx = streams[t].flatten()  # (K * B,)
        active = None if t < t_all else torch.tensor([t < s for s in steps])
        yb = y.index_select(0, idx)  # (K * B,)
        if plan is None:
            xb = x_flat.index_select(0, idx).view(*streams.shape[1:], *x.shape[1:])  # (K, B, ...)
            optim.step(opt_params, grad_fn(leaves, xb, yb), opt_state, cfg, t + 1, active)  # type: ignore[misc]
            continue
        torch.index_select(x_flat, 0, idx, out=x_rows)
        xb = x_buf.view(*streams.shape[1:], -1)  # (K, B, D) (D + 1 with the bias column)
        if fold and active is None:  # momentum folded into the weight-gradient products
            mlp_grads(plan, leaves, xb, yb, state["buf"], beta=cfg.momentum)
            optim.step(opt_params, state["buf"], opt_state, cfg, t + 1, accumulated=True)
        else:
            grads = mlp_grads(plan, leaves, xb, yb, grad_buf, clip=clip)
            if gens:  # the same draws, in the same order, as train_model's
                mechanism.add_noise_stacked(grads, noise_std, gens, trainable)
            optim.step(opt_params, grads, opt_state, cfg, t + 1, active)
    if folded is not None:
        assert original_plan is not None
        leaves = unfold_first_bias(original_plan, leaves, names)
    return {**{k: v.detach().contiguous() for k, v in leaves.items()}, **{k: v.detach() for k, v in buffers.items()}}
