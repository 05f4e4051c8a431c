"""Compile an ordinary ``torch.nn.Module`` into a program that runs on secret shares.

``compile_model`` traces the module with ``torch.fx``, refuses anything it cannot run *before*
any party starts (naming the layer type and its qualified name), folds eval-mode BatchNorm into
the preceding Conv2d/Linear, and moves each ReLU that feeds a max-pool behind it
(``maxpool(relu(x)) == relu(maxpool(x))``, a quarter of the comparisons for 2x2 pools).
The program is run by ``privlab.mpc.interpreter.run_program``.
"""

from __future__ import annotations

import copy
import operator
import threading
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from privlab.errors import UnsupportedModuleError

SUPPORTED_MODULES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv2d,
    nn.ReLU,
    nn.GELU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.Flatten,
    nn.LayerNorm,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Identity,
    nn.Softmax,
    nn.Sigmoid,
    nn.Tanh,
)
SUPPORTED_FUNCTIONS: set[object] = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    operator.matmul,
    operator.getitem,
    operator.floordiv,
    getattr,
    torch.add,
    torch.sub,
    torch.mul,
    torch.matmul,
    torch.bmm,
    torch.flatten,
    torch.reshape,
    torch.transpose,
    torch.permute,
    torch.squeeze,
    torch.unsqueeze,
    torch.cat,
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.softmax,
    F.relu,
    F.gelu,
    F.softmax,
    F.max_pool2d,
    F.avg_pool2d,
    F.layer_norm,
    F.linear,
}
SHAPE_METHODS = {
    "view",
    "reshape",
    "transpose",
    "permute",
    "flatten",
    "contiguous",
    "size",
    "unsqueeze",
    "squeeze",
    "expand",
    "chunk",
    "split",
    "t",
}
SUPPORTED_METHODS = SHAPE_METHODS | {
    "add",
    "sub",
    "mul",
    "matmul",
    "softmax",
    "relu",
    "sigmoid",
    "tanh",
    "mean",
    "sum",
    "__getitem__",
    "dim",
}
_POOLS = (nn.MaxPool2d,)
_TRACE_LOCK = threading.Lock()


@dataclass(frozen=True)
class PrivateModel:
    """A checked, traced and rewritten module plus the input shape both parties agree on."""

    graph_module: fx.GraphModule
    input_shape: tuple[int, ...]


def _qualname(node: fx.Node) -> str:
    return str(node.target) if node.op == "call_module" else node.name


def check_supported(gm: fx.GraphModule) -> None:
    """Raise ``UnsupportedModuleError`` for the first node privlab.mpc cannot run."""
    for node in gm.graph.nodes:
        if node.op == "call_module":
            mod = gm.get_submodule(str(node.target))
            if not isinstance(mod, SUPPORTED_MODULES):
                raise UnsupportedModuleError(
                    f"privlab.mpc cannot run layer {type(mod).__name__} at '{node.target}'. "
                    f"Supported layers: {', '.join(m.__name__ for m in SUPPORTED_MODULES)}. "
                    "Replace it or compute it before sharing the input."
                )
            _check_module_options(mod, str(node.target))
        elif node.op == "call_function" and node.target not in SUPPORTED_FUNCTIONS:
            name = getattr(node.target, "__name__", str(node.target))
            raise UnsupportedModuleError(
                f"privlab.mpc cannot run function {name} at '{node.name}'. "
                "Use supported layers (Linear, Conv2d, ReLU, GELU, pooling, LayerNorm, softmax "
                "attention, reshapes)."
            )
        elif node.op == "call_function" and node.target is F.max_pool2d:
            pad = node.kwargs.get("padding", node.args[3] if len(node.args) > 3 else 0)
            if pad not in (0, (0, 0)):
                raise UnsupportedModuleError(
                    f"privlab.mpc cannot run max_pool2d at '{node.name}': only padding=0 max-pooling is supported."
                )
        elif node.op == "call_method" and node.target not in SUPPORTED_METHODS:
            raise UnsupportedModuleError(f"privlab.mpc cannot run tensor method .{node.target}() at '{node.name}'.")


def _check_module_options(mod: nn.Module, name: str) -> None:
    def refuse(why: str) -> UnsupportedModuleError:
        return UnsupportedModuleError(f"privlab.mpc cannot run layer {type(mod).__name__} at '{name}': {why}.")

    if isinstance(mod, nn.MaxPool2d) and (
        mod.padding not in (0, (0, 0)) or mod.dilation not in (1, (1, 1)) or mod.ceil_mode
    ):
        raise refuse("only padding=0, dilation=1, ceil_mode=False max-pooling is supported")
    if isinstance(mod, nn.Conv2d) and (mod.padding_mode != "zeros" or isinstance(mod.padding, str)):
        raise refuse("only numeric zero padding is supported")
    if isinstance(mod, nn.AvgPool2d) and (mod.ceil_mode or not mod.count_include_pad):
        raise refuse("only ceil_mode=False, count_include_pad=True average pooling is supported")
    if isinstance(mod, nn.LayerNorm) and len(mod.normalized_shape) != 1:
        raise refuse("only normalisation over the last dimension is supported")
    if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d) and mod.running_mean is None:
        raise refuse("BatchNorm needs running statistics (track_running_stats=True) to run in eval")


def _fold_batchnorm(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        bn = gm.get_submodule(str(node.target))
        if not isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d):
            continue
        prev = node.args[0]
        if not (isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1):
            continue
        layer = gm.get_submodule(str(prev.target))
        if not isinstance(layer, nn.Conv2d | nn.Linear):
            continue
        if bn.running_var is None or bn.running_mean is None:
            continue
        scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
        fused = copy.deepcopy(layer)
        with torch.no_grad():
            shape = (-1,) + (1,) * (fused.weight.dim() - 1)
            fused.weight.mul_(scale.reshape(shape))
            old_bias = layer.bias if layer.bias is not None else torch.zeros_like(shift)
            fused.bias = nn.Parameter(old_bias * scale + shift)
        gm.add_submodule(str(prev.target), fused)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)


def _is_relu(gm: fx.GraphModule, n: fx.Node) -> bool:
    if n.op == "call_module":
        return isinstance(gm.get_submodule(str(n.target)), nn.ReLU)
    return n.op == "call_function" and n.target in (F.relu, torch.relu)


def _swap_relu_maxpool(gm: fx.GraphModule) -> None:
    for pool in list(gm.graph.nodes):
        if not (pool.op == "call_module" and isinstance(gm.get_submodule(str(pool.target)), _POOLS)):
            continue
        relu = pool.args[0]
        if not (isinstance(relu, fx.Node) and _is_relu(gm, relu) and len(relu.users) == 1):
            continue
        with gm.graph.inserting_after(pool):
            new_relu = gm.graph.create_node(relu.op, relu.target, (pool,), {})
        pool.replace_all_uses_with(new_relu, delete_user_cb=lambda u, r=new_relu: u is not r)
        pool.args = (relu.args[0], *pool.args[1:])
        gm.graph.erase_node(relu)


def compile_model(module: nn.Module, input_shape: tuple[int, ...] | torch.Size) -> PrivateModel:
    """Trace, check and rewrite ``module`` (a deep copy, put in eval mode) for private inference.

    Raises ``UnsupportedModuleError`` naming the first layer or function that cannot run on
    shares. ``input_shape`` (with batch dimension) is public: both parties know it.
    """
    mod = copy.deepcopy(module).eval()
    try:
        with _TRACE_LOCK:  # fx patches torch globally while tracing: one trace at a time
            gm = fx.symbolic_trace(mod)
    except Exception as exc:  # data-dependent control flow etc.
        raise UnsupportedModuleError(
            f"privlab.mpc could not trace {type(module).__name__} with torch.fx: {exc}"
        ) from exc
    check_supported(gm)
    _fold_batchnorm(gm)
    _swap_relu_maxpool(gm)
    gm.graph.lint()
    gm.recompile()
    return PrivateModel(gm, tuple(int(s) for s in input_shape))
