"""Compile an ordinary ``torch.nn.Module`` into a program that runs on secret shares.

``compile_model`` traces the module with ``torch.fx``, refuses anything it cannot run *before*
any party starts (naming the layer type and its qualified name, or the option it would not
honour), records each node's shape by a plaintext run on zeros of the public input shape, writes
torch's implicit dimension into ``softmax(dim=None)``, folds eval-mode BatchNorm into the
preceding Conv2d/Linear where that is the same function, and moves each ReLU that feeds a
max-pool behind it (``maxpool(relu(x)) == relu(maxpool(x))``, a quarter of the comparisons for
2x2 pools).
The program is run by ``privlab.mpc.interpreter.run_program``.
"""

from __future__ import annotations

import copy
import operator
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

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
    """Raise ``UnsupportedModuleError`` for the first node privlab.mpc cannot run, or whose
    options (pooling windows, padding, normalised dimensions) it would not honour."""
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
        elif node.op == "call_function" and node.target in FUNCTION_PARAMETERS:
            check_function_options(node.target, node.args, node.kwargs, node.name)
        elif node.op == "call_method" and node.target not in SUPPORTED_METHODS:
            raise UnsupportedModuleError(f"privlab.mpc cannot run tensor method .{node.target}() at '{node.name}'.")


# Positional parameters, in torch's order, of the functionals whose options are checked.
FUNCTION_PARAMETERS: dict[object, tuple[str, ...]] = {
    F.max_pool2d: ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    F.avg_pool2d: ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    F.layer_norm: ("input", "normalized_shape", "weight", "bias", "eps"),
}
_POOL_RULES = {
    "MaxPool2d": "max-pooling with square windows, padding=0, dilation=1, ceil_mode=False, return_indices=False",
    "AvgPool2d": "average pooling with square windows, ceil_mode=False, divisor_override=None and "
    "count_include_pad=True (or padding=0)",
}


def call_options(fn: object, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a call to a functional of ``FUNCTION_PARAMETERS`` by parameter name."""
    return {**dict(zip(FUNCTION_PARAMETERS[fn], args, strict=False)), **kwargs}


def pool_violation(kind: str, opts: Mapping[str, Any]) -> str | None:
    """The first option of a ``kind`` ("MaxPool2d" or "AvgPool2d") call that privlab.mpc's
    pooling (square windows of one int size) would not honour, as ``name=value``; ``None`` if
    all are honoured. Values still unknown at compile time (``fx.Node``) are skipped."""
    for key in ("kernel_size", "stride", "padding", "dilation"):
        v = opts.get(key)
        if isinstance(v, tuple | list) and not any(isinstance(u, fx.Node) for u in v) and len({int(u) for u in v}) > 1:
            return f"{key}={tuple(v)!r}"
    fixed: dict[str, Any] = (
        {"padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}
        if kind == "MaxPool2d"
        else {"ceil_mode": False, "divisor_override": None}
    )
    for key, default in fixed.items():
        v = opts.get(key, default)
        if not isinstance(v, fx.Node) and _scalar(v) != default:
            return f"{key}={v!r}"
    pad = opts.get("padding", 0)
    if kind == "AvgPool2d" and opts.get("count_include_pad", True) is False and _scalar(pad) != 0:
        return "count_include_pad=False"
    return None


def _scalar(v: Any) -> Any:
    return v[0] if isinstance(v, tuple | list) and v else v


def check_function_options(fn: object, args: tuple[Any, ...], kwargs: Mapping[str, Any], where: str) -> None:
    """Raise ``UnsupportedModuleError`` if a pooling or layer_norm call has an option privlab.mpc
    would ignore. Run at compile time, and again on the public values at run time."""
    opts = call_options(fn, args, kwargs)
    if fn is F.max_pool2d or fn is F.avg_pool2d:
        kind = "MaxPool2d" if fn is F.max_pool2d else "AvgPool2d"
        bad = pool_violation(kind, opts)
        if bad is not None:
            raise UnsupportedModuleError(
                f"privlab.mpc does not support F.{kind[:3].lower()}_pool2d({bad}) (function '{where}'); "
                f"it runs {_POOL_RULES[kind]}."
            )
    elif fn is F.layer_norm:
        shape = opts.get("normalized_shape")
        if isinstance(shape, tuple | list | torch.Size) and len(shape) != 1:
            raise UnsupportedModuleError(
                f"privlab.mpc does not support F.layer_norm(normalized_shape={tuple(shape)!r}) (function "
                f"'{where}'); it normalises over the last dimension only: flatten the dimensions first."
            )


def _check_module_options(mod: nn.Module, name: str) -> None:
    kind = type(mod).__name__

    def refuse(option: str, why: str) -> UnsupportedModuleError:
        return UnsupportedModuleError(f"privlab.mpc does not support {kind}({option}) (layer '{name}'); {why}.")

    if isinstance(mod, nn.MaxPool2d | nn.AvgPool2d):
        opts = {k: getattr(mod, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                              "return_indices", "count_include_pad", "divisor_override")
                if hasattr(mod, k)}
        bad = pool_violation("MaxPool2d" if isinstance(mod, nn.MaxPool2d) else "AvgPool2d", opts)
        if bad is not None:
            raise refuse(bad, f"it runs {_POOL_RULES[kind]}")
    if isinstance(mod, nn.Conv2d) and (mod.padding_mode != "zeros" or isinstance(mod.padding, str)):
        raise refuse(f"padding={mod.padding!r}, padding_mode={mod.padding_mode!r}",
                     "only numeric zero padding is supported")
    if isinstance(mod, nn.LayerNorm) and len(mod.normalized_shape) != 1:
        raise refuse(f"normalized_shape={tuple(mod.normalized_shape)!r}",
                     "it normalises over the last dimension only")
    if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d) and mod.running_mean is None:
        raise refuse("track_running_stats=False", "BatchNorm needs running statistics to run in eval")


def _propagate_shapes(gm: fx.GraphModule, input_shape: tuple[int, ...]) -> None:
    """Record each node's output shape (``node.meta['tensor_meta']``) by a plaintext run on zeros
    of the public input shape; no shapes if the module does not run on it."""
    floats = [q.dtype for q in gm.parameters() if q.is_floating_point()]
    x = torch.zeros(input_shape, dtype=floats[0] if floats else torch.get_default_dtype())
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ShapeProp(gm).propagate(x)
    except Exception:  # a wrong input shape fails later, on the parties, with torch's own message
        for node in gm.graph.nodes:
            node.meta.pop("tensor_meta", None)


def _rank(node: Any) -> int | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return len(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def implicit_softmax_dim(rank: int) -> int:
    """torch's implicit softmax dimension for an input of ``rank``: 0 for ranks 0, 1 and 3, else 1
    (``torch.nn.functional._get_softmax_dim``, deprecated in torch but still what it computes)."""
    return 0 if rank in (0, 1, 3) else 1


def _resolve_softmax_dims(gm: fx.GraphModule) -> None:
    """Write torch's implicit dimension into every ``Softmax(dim=None)`` and ``F.softmax(x)``, so
    that the interpreter and the range proof use the dimension torch uses."""
    resolved: dict[str, int] = {}  # one Softmax layer may be called more than once
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(mod := gm.get_submodule(str(node.target)), nn.Softmax):
            target = str(node.target)
            if mod.dim is None or target in resolved:
                rank = _rank(node.args[0])
                dim = None if rank is None else implicit_softmax_dim(rank)
                if dim is None or resolved.setdefault(target, dim) != dim:
                    raise UnsupportedModuleError(
                        f"privlab.mpc does not support Softmax(dim=None) (layer '{target}') when the input's "
                        "rank is unknown at compile time or differs between calls; give dim explicitly."
                    )
                gm.add_submodule(target, nn.Softmax(dim=dim))
        elif node.op == "call_function" and node.target in (F.softmax, torch.softmax):
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
            if dim is None:
                rank = _rank(node.args[0])
                if rank is None:
                    raise UnsupportedModuleError(
                        f"privlab.mpc does not support softmax(dim=None) (function '{node.name}') when the "
                        "input's rank is unknown at compile time; give dim explicitly."
                    )
                node.args = node.args[:1]
                node.kwargs = {**node.kwargs, "dim": implicit_softmax_dim(rank)}


def _fold_batchnorm(gm: fx.GraphModule) -> None:
    """Fold an eval BatchNorm into the Conv2d or Linear before it where the fold is the same
    function: BatchNorm scales dim 1, the fold scales the layer's output channels, which are
    dim 1 for Conv2d + BatchNorm2d (4-D) and for Linear + BatchNorm1d only on a 2-D ``(B, C)``
    output; a Linear on ``(B, C, L)`` scales ``L``. Elsewhere the BatchNorm stays, as a
    per-channel affine map over dim 1."""
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
        same = (
            isinstance(bn, nn.BatchNorm2d)
            if isinstance(layer, nn.Conv2d)
            else isinstance(bn, nn.BatchNorm1d) and _rank(prev) == 2
        )
        if not same:
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
    _propagate_shapes(gm, tuple(int(s) for s in input_shape))
    _resolve_softmax_dims(gm)
    _fold_batchnorm(gm)
    _swap_relu_maxpool(gm)
    gm.graph.lint()
    gm.recompile()
    return PrivateModel(gm, tuple(int(s) for s in input_shape))
