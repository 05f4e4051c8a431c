"""Run a compiled model on shares: the model owner's weights and the data owner's input.

Values flowing through the graph are either ``Shared`` (an int64 share of a fixed-point tensor)
or public Python objects (shapes, constants). Shape operations run on the share tensor itself,
since a share has the shape of its secret.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from privlab.errors import UnsupportedModuleError
from privlab.mpc.encoding import encode
from privlab.mpc.model import (
    FUNCTION_PARAMETERS,
    SHAPE_METHODS,
    PrivateModel,
    check_function_options,
    implicit_softmax_dim,
)
from privlab.mpc.party import Party
from privlab.mpc.protocols import arith, compare, nonlinear
from privlab.mpc.protocols.verify import verify
from privlab.mpc.sharing import reveal, share


@dataclass(frozen=True)
class Shared:
    """A party's share of a fixed-point tensor."""

    t: torch.Tensor


def _wrap(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return Shared(v)
    if isinstance(v, tuple | list):
        return type(v)(_wrap(u) for u in v)
    return v


def _unwrap(v: Any) -> Any:
    if isinstance(v, Shared):
        return v.t
    if isinstance(v, tuple | list):
        return type(v)(_unwrap(u) for u in v)
    return v


class _Runner:
    def __init__(self, party: Party, model: PrivateModel, owner: int) -> None:
        self.p = party
        self.gm = model.graph_module
        self.owner = owner
        self.params: dict[str, torch.Tensor] = {}

    def param(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """Share of a weight, shared by the model owner on first use (no communication)."""
        if name not in self.params:
            src = value.detach() if self.p.rank == self.owner else None
            self.params[name] = share(self.p, self.owner, src, value.shape)
        return self.params[name]

    def owned(self, value: torch.Tensor) -> torch.Tensor | None:
        """The owner's encoded weight (``None`` on the other party): it is never shared."""
        return encode(value.detach(), self.p.f) if self.p.rank == self.owner else None

    def module(self, name: str, mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
        p = self.p
        if isinstance(mod, nn.Linear) and self.owner == 0:
            wt = self.owned(mod.weight.t())
            y = arith.beaver_owned(p, "matmul", x, wt, tuple(mod.weight.t().shape), f=p.f)
            return y + self.param(name + ".bias", mod.bias) if mod.bias is not None else y
        if isinstance(mod, nn.Conv2d) and self.owner == 0:
            kw = {
                "stride": list(mod.stride),
                "padding": list(mod.padding),  # type: ignore[arg-type]
                "dilation": list(mod.dilation),
                "groups": mod.groups,
            }
            y = arith.beaver_owned(p, "conv2d", x, self.owned(mod.weight), tuple(mod.weight.shape), kw, f=p.f)
            if mod.bias is not None:
                y = y + self.param(name + ".bias", mod.bias).reshape(1, -1, 1, 1)
            return y
        if isinstance(mod, nn.Linear):
            w = self.param(name + ".weight", mod.weight)
            y = arith.matmul(p, x, w.t())
            return y + self.param(name + ".bias", mod.bias) if mod.bias is not None else y
        if isinstance(mod, nn.Conv2d):
            w = self.param(name + ".weight", mod.weight)
            b = self.param(name + ".bias", mod.bias) if mod.bias is not None else None
            return arith.conv2d(
                p, x, w, b, stride=mod.stride, padding=mod.padding, dilation=mod.dilation, groups=mod.groups
            )
        if isinstance(mod, nn.ReLU):
            return compare.relu(p, x)
        if isinstance(mod, nn.GELU):
            return nonlinear.gelu(p, x)
        if isinstance(mod, nn.Sigmoid):
            return nonlinear.sigmoid(p, x)
        if isinstance(mod, nn.Tanh):
            return nonlinear.tanh(p, x)
        if isinstance(mod, nn.Softmax):
            return nonlinear.softmax(p, x, implicit_softmax_dim(x.dim()) if mod.dim is None else mod.dim)
        if isinstance(mod, nn.MaxPool2d):
            return compare.max_pool2d(p, x, _int(mod.kernel_size), _int(mod.stride))
        if isinstance(mod, nn.AvgPool2d):
            return arith.avg_pool2d(p, x, _int(mod.kernel_size), _int(mod.stride), _int(mod.padding))
        if isinstance(mod, nn.Flatten):
            return x.flatten(mod.start_dim, mod.end_dim)
        if isinstance(mod, nn.LayerNorm):
            w = self.param(name + ".weight", mod.weight) if mod.weight is not None else None
            b = self.param(name + ".bias", mod.bias) if mod.bias is not None else None
            return nonlinear.layer_norm(p, x, w, b, mod.eps)
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):  # not folded: per-channel affine
            if mod.running_var is None or mod.running_mean is None:
                raise UnsupportedModuleError(f"BatchNorm at '{name}' has no running statistics")
            scale = (mod.weight if mod.affine else 1.0) / torch.sqrt(mod.running_var + mod.eps)
            shift = (mod.bias if mod.affine else 0.0) - mod.running_mean * scale
            shape = (1, -1) + (1,) * (x.dim() - 2)
            a = self.param(name + ".scale", scale.reshape(shape))
            return arith.mul(p, x, a) + self.param(name + ".shift", shift.reshape(shape))
        if isinstance(mod, nn.Dropout | nn.Identity):
            return x
        raise UnsupportedModuleError(f"privlab.mpc cannot run {type(mod).__name__} at '{name}'")

    def binary(self, fn: Any, a: Any, b: Any) -> Any:
        p = self.p
        sa, sb = isinstance(a, Shared), isinstance(b, Shared)
        if not (sa or sb):
            return fn(a, b)
        if fn in (operator.add, torch.add, operator.sub, torch.sub):
            sign = -1 if fn in (operator.sub, torch.sub) else 1
            if sa and sb:
                return Shared(a.t + sign * b.t)
            if sa:
                return Shared(arith.add_public(p, a.t, sign * _public(b)))
            return Shared(arith.add_public(p, sign * b.t, _public(a)))
        if fn in (operator.mul, torch.mul):
            if sa and sb:
                return Shared(arith.mul(p, a.t, b.t))
            s, c = (a, b) if sa else (b, a)
            return Shared(arith.mul_public(p, s.t, _public(c)))
        if fn is operator.truediv and sa and not sb:
            n = _integral(b)
            if n is not None and n != 0:  # exact to 2 ulps at any magnitude, like mean and avg_pool2d
                q = arith.div_public(p, a.t, abs(n))
                return Shared(q if n > 0 else -q)
            return Shared(arith.mul_public(p, a.t, 1.0 / _public(b)))
        if fn in (operator.matmul, torch.matmul, torch.bmm) and sa and sb:
            return Shared(arith.matmul(p, a.t, b.t))
        raise UnsupportedModuleError(f"privlab.mpc cannot apply {fn} to these operands")

    def function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        p = self.p
        if fn in (
            operator.add,
            torch.add,
            operator.sub,
            torch.sub,
            operator.mul,
            torch.mul,
            operator.truediv,
            operator.floordiv,
            operator.matmul,
            torch.matmul,
            torch.bmm,
        ):
            return self.binary(fn, args[0], args[1])
        if fn is operator.neg:
            return Shared(-args[0].t) if isinstance(args[0], Shared) else -args[0]
        x = args[0]
        if fn in (torch.relu, F.relu):
            return Shared(compare.relu(p, x.t))
        if fn is F.gelu:
            return Shared(nonlinear.gelu(p, x.t))
        if fn is torch.sigmoid:
            return Shared(nonlinear.sigmoid(p, x.t))
        if fn is torch.tanh:
            return Shared(nonlinear.tanh(p, x.t))
        if fn in (torch.softmax, F.softmax):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            return Shared(nonlinear.softmax(p, x.t, implicit_softmax_dim(x.t.dim()) if dim is None else dim))
        if fn is F.max_pool2d:
            k = _int(kwargs.get("kernel_size", args[1] if len(args) > 1 else None))
            s = kwargs.get("stride", args[2] if len(args) > 2 else None)
            return Shared(compare.max_pool2d(p, x.t, k, _int(s) if s else k))
        if fn is F.avg_pool2d:
            k = _int(kwargs.get("kernel_size", args[1] if len(args) > 1 else None))
            s = kwargs.get("stride", args[2] if len(args) > 2 else None)
            pad = _int(kwargs.get("padding", args[3] if len(args) > 3 else 0))
            return Shared(arith.avg_pool2d(p, x.t, k, _int(s) if s else k, pad))
        if fn is F.linear:
            w = kwargs.get("weight", args[1] if len(args) > 1 else None)
            b = kwargs.get("bias", args[2] if len(args) > 2 else None)
            if not isinstance(w, Shared):
                raise UnsupportedModuleError("F.linear needs a weight tensor")
            y = arith.matmul(p, x.t, w.t.t())
            return Shared(y + b.t if isinstance(b, Shared) else y)
        if fn is F.layer_norm:
            w = kwargs.get("weight", args[2] if len(args) > 2 else None)
            b = kwargs.get("bias", args[3] if len(args) > 3 else None)
            eps = kwargs.get("eps", args[4] if len(args) > 4 else 1e-5)
            return Shared(
                nonlinear.layer_norm(
                    p, x.t, w.t if isinstance(w, Shared) else None, b.t if isinstance(b, Shared) else None, eps
                )
            )
        # getattr, getitem, reshapes and cat act on the share tensors like on plain tensors
        return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))

    def method(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0]
        if not isinstance(x, Shared) or name in SHAPE_METHODS or name in ("__getitem__", "dim"):
            return _wrap(getattr(_unwrap(x), name)(*_unwrap(args[1:]), **_unwrap(kwargs)))
        p = self.p
        if name in ("add", "sub", "mul", "matmul"):
            fn = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "matmul": operator.matmul}[name]
            return self.binary(fn, x, args[1])
        if name == "relu":
            return Shared(compare.relu(p, x.t))
        if name in ("sigmoid", "tanh"):
            return Shared(getattr(nonlinear, name)(p, x.t))
        if name == "softmax":
            return Shared(nonlinear.softmax(p, x.t, kwargs.get("dim", args[1] if len(args) > 1 else -1)))
        if name == "sum":
            return Shared(x.t.sum(*_unwrap(args[1:]), **_unwrap(kwargs)))
        if name == "mean":
            dim = kwargs.get("dim", args[1] if len(args) > 1 else tuple(range(x.t.dim())))
            return Shared(arith.mean(p, x.t, dim, kwargs.get("keepdim", False)))
        raise UnsupportedModuleError(f"privlab.mpc cannot run tensor method .{name}()")

    def run(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[fx.Node, Any] = {}
        out: Any = None
        for node in self.gm.graph.nodes:
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            with self.p.counter.scope(node.name):
                if node.op == "placeholder":
                    env[node] = Shared(x)
                elif node.op == "get_attr":
                    value = (
                        self.gm.get_parameter(node.target)
                        if isinstance(_attr(self.gm, node.target), nn.Parameter)
                        else _attr(self.gm, node.target)
                    )
                    env[node] = (
                        Shared(self.param(str(node.target), value)) if isinstance(value, torch.Tensor) else value
                    )
                elif node.op == "call_module":
                    mod = self.gm.get_submodule(str(node.target))
                    env[node] = Shared(self.module(str(node.target), mod, args[0].t))
                elif node.op == "call_function":
                    if node.target in FUNCTION_PARAMETERS:  # options only known now (computed shapes)
                        check_function_options(node.target, tuple(args), dict(kwargs), node.name)
                    env[node] = self.function(node.target, tuple(args), dict(kwargs))
                elif node.op == "call_method":
                    env[node] = self.method(str(node.target), tuple(args), dict(kwargs))
                elif node.op == "output":
                    out = args[0]
        if not isinstance(out, Shared):
            raise UnsupportedModuleError("the model's output must be a single tensor")
        return out.t


def _attr(gm: fx.GraphModule, target: Any) -> Any:
    obj: Any = gm
    for part in str(target).split("."):
        obj = getattr(obj, part)
    return obj


def _int(v: Any) -> int:
    return int(v[0]) if isinstance(v, tuple | list) else int(v)


def _integral(v: Any) -> int | None:
    """``v`` as an int if it is a Python number with an integral value below ``2^62``, else ``None``."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, float) and not v.is_integer():
        return None
    return int(v) if abs(v) < 2**62 else None


def _public(v: Any) -> float | torch.Tensor:
    return v if isinstance(v, torch.Tensor) else float(v)


def run_program(
    party: Party,
    model: PrivateModel,
    x: torch.Tensor | None,
    *,
    owner: int = 0,
    data_owner: int = 1,
    reveal_to: int | None = 1,
) -> torch.Tensor | None:
    """Evaluate ``model`` privately: ``owner`` shares the weights, ``data_owner`` the input ``x``;
    the output is revealed to ``reveal_to`` only (``None``: to both). Returns the real output
    on the party that learns it and ``None`` on the other."""
    xs = share(party, data_owner, x, model.input_shape)
    out = _Runner(party, model, owner).run(xs)
    verify(party)  # pending runtime range checks (none after a plaintext proof), charged apart
    with party.counter.scope("reveal"):
        return reveal(party, out, to=reveal_to)
