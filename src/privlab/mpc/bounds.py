"""Plaintext range proof for private inference: interval bounds over the public weights.

Before any party starts, the model owner (who holds the weights) propagates the declared input
range ``[lo, hi]`` (public: the data owner declares it) through the compiled ``torch.fx`` graph
with interval arithmetic, per element: an affine layer maps the box with centre ``c`` and radius
``r`` to centre ``W c + b`` and radius ``|W| r`` (exact per coordinate); ReLU, sigmoid, tanh and
max-pooling are monotone; softmax lies in ``[0, 1]``; LayerNorm's normalised output satisfies
``|y| <= sqrt(d - 1)`` (Samuelson's inequality); a product of two boxes takes its four corners;
``x @ y`` of two shared tensors is bounded by ``max|x| @ max|y|``. At each operation the bound
is compared with that operation's limit (see ``docs/mpc.md``), with a factor-2 guard band so
that the protocols' own approximation errors cannot carry a proven value out:

* a product (Linear, Conv2d, ``@``, ``*``, BatchNorm's scaling, LayerNorm's square) before its
  truncation: ``|x y| <= 2^(62 - 2f) / 2`` (``2^29`` for ``f = 16``); a public scaling by
  ``c``: ``|x c| <= 2^(62 - 2f - e) / 2`` with its ``e`` extra fractional bits;
* a comparison input (ReLU, GELU, sigmoid, max-pool window spreads, softmax row spreads, ``2x``
  for tanh): ``|x| <= 2^(cmp_bits - 1 - f) / 2`` (``2^22``);
* LayerNorm's variance: ``var + eps < 2^15`` (the inverse square root's octaves end there);
* every value, sums included: ``|x| <= 2^(62 - f) / 2`` (``2^45``; the ring holds ``2^(63 - f)``).

This reveals nothing: it uses only what the model owner already has and the public range.
The first violation raises :class:`~privlab.errors.MPCRangeError` naming the layer.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from privlab.errors import MPCRangeError
from privlab.mpc.config import MPCConfig
from privlab.mpc.model import SHAPE_METHODS, PrivateModel

RSQRT_MAX = 0.98 * 2.0**15  # the inverse square root's last octave [2^14, 2^15), less a margin


@dataclass(frozen=True)
class Box:
    """Elementwise lower and upper bounds of a tensor (float64)."""

    lo: torch.Tensor
    hi: torch.Tensor
    simplex: bool = False  # non-negative and summing to 1 over the last dimension (a softmax)

    @property
    def mag(self) -> torch.Tensor:
        return torch.maximum(self.lo.abs(), self.hi.abs())

    def map(self, fn: Any) -> Any:
        """A shape operation applied to both bounds (tuples of results become tuples of boxes)."""
        a, b = fn(self.lo), fn(self.hi)
        if isinstance(a, torch.Tensor):
            return Box(a, b)
        if isinstance(a, tuple | list):
            return type(a)(Box(u, v) if isinstance(u, torch.Tensor) else u for u, v in zip(a, b, strict=True))
        return a


@dataclass(frozen=True)
class LayerBound:
    """The largest value one check of one layer can reach, and its limit."""

    layer: str
    quantity: str
    bound: float
    limit: float


@dataclass(frozen=True)
class RangeReport:
    """Every check made for a model and input range (all passed if returned)."""

    input_range: tuple[float, float]
    checks: list[LayerBound]

    def worst(self) -> LayerBound:
        """The check closest to its limit (largest ``bound / limit``)."""
        return max(self.checks, key=lambda c: c.bound / c.limit)


def default_input_range(x: torch.Tensor) -> tuple[float, float]:
    """The range ``private_inference`` declares when none is given: ``[-b, b]`` (or ``[0, b]``
    for non-negative data) with ``b`` the smallest power of two ``>= max |x|``. It makes public
    only the sign pattern and the order of magnitude of the data, not its exact extremes."""
    m = float(x.abs().max()) if x.numel() else 1.0
    if not math.isfinite(m):
        raise MPCRangeError(f"The input of private_inference must be finite. Got a maximum magnitude of {m} instead.")
    b = 2.0 ** math.ceil(math.log2(m)) if m > 0 else 1.0
    return (-b if x.numel() and float(x.min()) < 0 else 0.0, b)


class _Prover:
    def __init__(self, model: PrivateModel, config: MPCConfig, input_range: tuple[float, float]) -> None:
        self.gm = model.graph_module
        self.cfg = config
        self.f = config.frac_bits
        self.product = 2.0 ** (62 - 2 * self.f) / 2
        self.value = 2.0 ** (62 - self.f) / 2
        self.cmp = 2.0 ** (config.cmp_bits - 1 - self.f) / 2
        self.range = input_range
        self.checks: list[LayerBound] = []
        self.layer = ""

    # -- checks -----------------------------------------------------------------------------
    def check(self, quantity: str, bound: torch.Tensor | float, limit: float, what: str) -> None:
        b = float(bound.max()) if isinstance(bound, torch.Tensor) and bound.numel() else float(bound)
        if isinstance(bound, torch.Tensor) and bound.numel() == 0:
            b = 0.0
        self.checks.append(LayerBound(self.layer, quantity, b, limit))
        if not b <= limit:
            raise MPCRangeError(
                f"privlab.mpc refuses layer '{self.layer}' ({what}): with inputs in "
                f"[{self.range[0]:g}, {self.range[1]:g}] and the model's weights, its {quantity} can reach "
                f"{b:.4g}, beyond the limit {limit:.4g} ({self._why(quantity)}). Declare a tighter input_range, "
                "rescale the weights or lower frac_bits / raise cmp_bits in MPCConfig."
            )

    def _why(self, quantity: str) -> str:
        f, l = self.f, self.cfg.cmp_bits
        if "product" in quantity:
            return f"half of 2^(62 - 2*frac_bits) = 2^{62 - 2 * f}: the fixed-point ring Z/2^64 would wrap"
        if quantity == "value":
            return f"half of 2^(62 - frac_bits) = 2^{62 - f}: the fixed-point ring Z/2^64 holds reals below 2^{63 - f}"
        if "variance" in quantity:
            return "0.98 * 2^15, where the octaves of LayerNorm's inverse square root end"
        return f"half of the comparison range 2^(cmp_bits - 1 - frac_bits) = 2^{l - 1 - f}"

    def cmp_in(self, x: Box, what: str, scale: float = 1.0) -> None:
        self.check("comparison input", x.mag * scale, self.cmp, what)

    # -- operations -------------------------------------------------------------------------
    def affine(self, x: Box, fn: Any, w: torch.Tensor, b: torch.Tensor | None, what: str) -> Box:
        c, r = (x.lo + x.hi) / 2, (x.hi - x.lo) / 2
        yc, yr = fn(c, w), fn(r, w.abs())
        self.check("product (before truncation)", yc.abs() + yr, self.product, what)
        if b is not None:
            yc = yc + b
        return Box(yc - yr, yc + yr)

    def mul(self, a: Box, b: Box, what: str) -> Box:
        corners = torch.stack(torch.broadcast_tensors(a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi))
        out = Box(corners.min(0).values, corners.max(0).values)
        self.check("product (before truncation)", out.mag, self.product, what)
        return out

    def mul_public(self, a: Box, c: Any, what: str) -> Box:
        ct = torch.as_tensor(c, dtype=torch.float64)
        extra = 0
        if isinstance(c, int | float) and 0 < abs(c) < 1:
            extra = min(16, math.ceil(-math.log2(abs(c))))
        lo, hi = a.lo * ct, a.hi * ct
        out = Box(torch.minimum(lo, hi), torch.maximum(lo, hi))
        self.check("product (before truncation)", out.mag, self.product / 2.0**extra, what)
        return out

    def matmul(self, a: Box, b: Box, what: str) -> Box:
        if torch.equal(b.lo, b.hi):  # a public (weight) operand: the exact affine bound
            return self.affine(a, torch.matmul, b.lo, None, what)
        if a.simplex:  # rows of a are convex weights: a @ b lies between b's extremes over k
            lo, hi = b.lo.amin(-2, keepdim=True), b.hi.amax(-2, keepdim=True)
            shape = (*torch.broadcast_shapes((*a.lo.shape[:-1], 1), lo.shape)[:-1], b.lo.shape[-1])
            out = Box(lo.expand(shape), hi.expand(shape))
            self.check("product (before truncation)", torch.matmul(a.mag, b.mag), self.product, what)
            return out
        m = torch.matmul(a.mag, b.mag)
        self.check("product (before truncation)", m, self.product, what)
        return Box(-m, m)

    def layer_norm(self, x: Box, w: Box | None, b: Box | None, eps: float, what: str) -> Box:
        spread = x.hi.amax(-1, keepdim=True) - x.lo.amin(-1, keepdim=True)
        self.check("product (before truncation)", spread**2, self.product, what + ", centred square")
        # var = min_c mean (x - c)^2 <= mean (|centre - c| + radius)^2 with c the mean centre,
        # and never more than spread^2 / 4
        centre, radius = (x.lo + x.hi) / 2, (x.hi - x.lo) / 2
        dev = (centre - centre.mean(-1, keepdim=True)).abs() + radius
        var = torch.minimum((dev**2).mean(-1, keepdim=True), spread**2 / 4)
        self.check("variance + eps", var + eps, RSQRT_MAX, what)
        d = x.lo.shape[-1]
        bound = math.sqrt(max(d - 1, 0)) * 1.05 + 0.05  # Samuelson's bound plus the approximation error
        y = Box(torch.full_like(x.lo, -bound), torch.full_like(x.lo, bound))
        if w is not None:
            y = self.mul(y, w, what + ", scale")
        if b is not None:
            y = Box(y.lo + b.lo, y.hi + b.hi)
        return y

    def softmax(self, x: Box, dim: int, what: str) -> Box:
        spread = x.hi.amax(dim, keepdim=True) - x.lo.amin(dim, keepdim=True)
        self.check("comparison input", spread + 2.0**8, self.cmp, what + " (row spread)")
        last = dim in (-1, x.lo.dim() - 1)
        return Box(torch.zeros_like(x.lo), torch.ones_like(x.lo), simplex=last)

    def max_pool(self, x: Box, k: int, s: int, what: str) -> Box:
        hi, lo = F.max_pool2d(x.hi, k, s), -F.max_pool2d(-x.lo, k, s)
        self.check("comparison input", hi - lo, self.cmp, what + " (window spread)")
        return Box(F.max_pool2d(x.lo, k, s), hi)

    def relu(self, x: Box, what: str) -> Box:
        self.cmp_in(x, what)
        return Box(x.lo.clamp(min=0), x.hi.clamp(min=0))

    def gelu(self, x: Box, what: str) -> Box:
        self.cmp_in(x, what)
        a, b = F.gelu(x.lo), F.gelu(x.hi)
        lo = torch.where((x.lo <= -0.75) & (x.hi >= -0.75), torch.full_like(a, -0.17), torch.minimum(a, b))
        return Box(lo - 1e-3, torch.maximum(a, b) + 1e-3)

    def monotone(self, x: Box, fn: Any, what: str, scale: float = 1.0) -> Box:
        self.cmp_in(x, what, scale)
        return Box(fn(x.lo) - 5e-3, fn(x.hi) + 5e-3)

    # -- graph ------------------------------------------------------------------------------
    def module(self, mod: nn.Module, x: Box) -> Box:
        what = type(mod).__name__
        if isinstance(mod, nn.Linear):
            return self.affine(x, lambda u, w: F.linear(u, w), mod.weight.detach().double(),
                               None if mod.bias is None else mod.bias.detach().double(), what)
        if isinstance(mod, nn.Conv2d):
            kw: dict[str, Any] = {
                "stride": mod.stride, "padding": mod.padding, "dilation": mod.dilation, "groups": mod.groups
            }
            bc = None if mod.bias is None else mod.bias.detach().double().reshape(1, -1, 1, 1)
            return self.affine(x, lambda u, w: F.conv2d(u, w, **kw), mod.weight.detach().double(), bc, what)
        if isinstance(mod, nn.ReLU):
            return self.relu(x, what)
        if isinstance(mod, nn.GELU):
            return self.gelu(x, what)
        if isinstance(mod, nn.Sigmoid):
            return self.monotone(x, torch.sigmoid, what)
        if isinstance(mod, nn.Tanh):
            return self.monotone(x, torch.tanh, what, 2.0)
        if isinstance(mod, nn.Softmax):
            return self.softmax(x, -1 if mod.dim is None else mod.dim, what)
        if isinstance(mod, nn.MaxPool2d):
            return self.max_pool(x, _int(mod.kernel_size), _int(mod.stride), what)
        if isinstance(mod, nn.AvgPool2d):
            k, s, p = _int(mod.kernel_size), _int(mod.stride), _int(mod.padding)
            return Box(F.avg_pool2d(x.lo, k, s, p), F.avg_pool2d(x.hi, k, s, p))
        if isinstance(mod, nn.Flatten):
            return x.map(lambda t: t.flatten(mod.start_dim, mod.end_dim))
        if isinstance(mod, nn.LayerNorm):
            lw = None if mod.weight is None else _exact(mod.weight)
            lb = None if mod.bias is None else _exact(mod.bias)
            return self.layer_norm(x, lw, lb, mod.eps, what)
        if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
            rv, rm = mod.running_var, mod.running_mean
            if rv is None or rm is None:
                raise MPCRangeError(f"BatchNorm at '{self.layer}' has no running statistics")
            scale = (mod.weight if mod.affine else 1.0) / torch.sqrt(rv + mod.eps)
            shift = (mod.bias if mod.affine else 0.0) - rm * scale
            shape = (1, -1) + (1,) * (x.lo.dim() - 2)
            y = self.mul(x, _exact(scale.reshape(shape)), what)
            sh = shift.detach().double().reshape(shape)
            return Box(y.lo + sh, y.hi + sh)
        return x  # Dropout, Identity

    def binary(self, fn: Any, a: Any, b: Any) -> Any:
        ba, bb = isinstance(a, Box), isinstance(b, Box)
        if not (ba or bb):
            return fn(a, b)
        name = getattr(fn, "__name__", str(fn))
        if fn in (operator.add, torch.add, operator.sub, torch.sub):
            sub = fn in (operator.sub, torch.sub)
            a = a if ba else _exact(a)
            b = b if bb else _exact(b)
            return Box(a.lo - b.hi, a.hi - b.lo) if sub else Box(a.lo + b.lo, a.hi + b.hi)
        if fn in (operator.mul, torch.mul):
            if ba and bb:
                return self.mul(a, b, name)
            s, c = (a, b) if ba else (b, a)
            return self.mul_public(s, c, "scaling by a constant")
        if fn is operator.truediv and ba and not bb:
            return self.mul_public(a, 1.0 / (b if isinstance(b, torch.Tensor) else float(b)), "division by a constant")
        if fn in (operator.matmul, torch.matmul, torch.bmm) and ba and bb:
            return self.matmul(a, b, "matmul")
        raise MPCRangeError(f"privlab.mpc cannot bound {name} at '{self.layer}'")

    def function(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if fn in (operator.add, torch.add, operator.sub, torch.sub, operator.mul, torch.mul, operator.truediv,
                  operator.floordiv, operator.matmul, torch.matmul, torch.bmm):
            return self.binary(fn, args[0], args[1])
        if fn is operator.neg:
            x = args[0]
            return Box(-x.hi, -x.lo) if isinstance(x, Box) else -x
        x = args[0]
        if isinstance(x, Box):
            if fn in (torch.relu, F.relu):
                return self.relu(x, "relu")
            if fn is F.gelu:
                return self.gelu(x, "gelu")
            if fn is torch.sigmoid:
                return self.monotone(x, torch.sigmoid, "sigmoid")
            if fn is torch.tanh:
                return self.monotone(x, torch.tanh, "tanh", 2.0)
            if fn in (torch.softmax, F.softmax):
                return self.softmax(x, kwargs.get("dim", args[1] if len(args) > 1 else -1), "softmax")
            if fn is F.max_pool2d:
                k = _int(kwargs.get("kernel_size", args[1] if len(args) > 1 else None))
                s = kwargs.get("stride", args[2] if len(args) > 2 else None)
                return self.max_pool(x, k, _int(s) if s else k, "max_pool2d")
            if fn is F.avg_pool2d:
                k = _int(kwargs.get("kernel_size", args[1] if len(args) > 1 else None))
                s = kwargs.get("stride", args[2] if len(args) > 2 else None)
                p = _int(kwargs.get("padding", args[3] if len(args) > 3 else 0))
                s = _int(s) if s else k
                return Box(F.avg_pool2d(x.lo, k, s, p), F.avg_pool2d(x.hi, k, s, p))
            if fn is F.linear:
                w = kwargs.get("weight", args[1] if len(args) > 1 else None)
                b = kwargs.get("bias", args[2] if len(args) > 2 else None)
                if not isinstance(w, Box):
                    raise MPCRangeError(f"privlab.mpc cannot bound F.linear without a weight at '{self.layer}'")
                y = self.matmul(x, w.map(lambda t: t.t()), "linear")
                return Box(y.lo + b.lo, y.hi + b.hi) if isinstance(b, Box) else y
            if fn is F.layer_norm:
                w = kwargs.get("weight", args[2] if len(args) > 2 else None)
                b = kwargs.get("bias", args[3] if len(args) > 3 else None)
                eps = kwargs.get("eps", args[4] if len(args) > 4 else 1e-5)
                return self.layer_norm(x, w if isinstance(w, Box) else None, b if isinstance(b, Box) else None,
                                       eps, "layer_norm")
        if fn is torch.cat:
            parts = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            return Box(torch.cat([p.lo for p in parts], dim), torch.cat([p.hi for p in parts], dim))
        if isinstance(x, Box):  # getattr, getitem, reshapes: the same operation on both bounds
            rest, kw = args[1:], kwargs
            return x.map(lambda t: fn(t, *rest, **kw))
        return fn(*args, **kwargs)

    def method(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = args[0]
        if not isinstance(x, Box):
            return getattr(x, name)(*args[1:], **kwargs)
        if name in SHAPE_METHODS or name in ("__getitem__", "dim"):
            return x.map(lambda t: getattr(t, name)(*args[1:], **kwargs))
        if name in ("add", "sub", "mul", "matmul"):
            fn = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "matmul": operator.matmul}[name]
            return self.binary(fn, x, args[1])
        if name == "relu":
            return self.relu(x, ".relu()")
        if name == "sigmoid":
            return self.monotone(x, torch.sigmoid, ".sigmoid()")
        if name == "tanh":
            return self.monotone(x, torch.tanh, ".tanh()", 2.0)
        if name == "softmax":
            return self.softmax(x, kwargs.get("dim", args[1] if len(args) > 1 else -1), ".softmax()")
        if name in ("sum", "mean"):
            return x.map(lambda t: getattr(t, name)(*args[1:], **kwargs))
        raise MPCRangeError(f"privlab.mpc cannot bound tensor method .{name}() at '{self.layer}'")

    def run(self, shape: tuple[int, ...]) -> None:
        env: dict[fx.Node, Any] = {}
        lo, hi = self.range
        for node in self.gm.graph.nodes:
            self.layer = str(node.target) if node.op == "call_module" else node.name
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            if node.op == "placeholder":
                env[node] = Box(torch.full(shape, float(lo), dtype=torch.float64),
                                torch.full(shape, float(hi), dtype=torch.float64))
            elif node.op == "get_attr":
                v = _attr(self.gm, node.target)
                env[node] = _exact(v) if isinstance(v, torch.Tensor) else v
            elif node.op == "call_module":
                env[node] = self.module(self.gm.get_submodule(str(node.target)), args[0])
            elif node.op == "call_function":
                env[node] = self.function(node.target, tuple(args), dict(kwargs))
            elif node.op == "call_method":
                env[node] = self.method(str(node.target), tuple(args), dict(kwargs))
            if node.op in ("call_module", "call_function", "call_method"):  # sums too: every value must fit the ring
                for box in env[node] if isinstance(env[node], tuple) else (env[node],):
                    if isinstance(box, Box):
                        self.check("value", box.mag, self.value, "its output")


def _exact(v: Any) -> Box:
    t = torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else v, dtype=torch.float64)
    return Box(t, t)


def _attr(gm: fx.GraphModule, target: Any) -> Any:
    obj: Any = gm
    for part in str(target).split("."):
        obj = getattr(obj, part)
    return obj


def _int(v: Any) -> int:
    return int(v[0]) if isinstance(v, tuple | list) else int(v)


def check_ranges(
    model: PrivateModel, input_range: tuple[float, float], config: MPCConfig | None = None
) -> RangeReport:
    """Prove that every layer of ``model`` stays inside the ring and its operations' domains for
    every input in ``input_range`` (elementwise), or raise ``MPCRangeError`` naming the first layer
    that may not. Plaintext, on the model owner's side; reveals nothing. See the module docstring."""
    config = config or MPCConfig()
    lo, hi = _check_range_arg(input_range)
    p = _Prover(model, config, (lo, hi))
    with torch.no_grad():
        p.run(model.input_shape)
    return RangeReport((lo, hi), p.checks)


def narrowest_cmp_bits(
    model: PrivateModel, input_range: tuple[float, float], config: MPCConfig | None = None
) -> int:
    """The smallest ``MPCConfig.cmp_bits`` at which :func:`check_ranges` proves ``model`` for
    ``input_range`` (every other setting from ``config``). Plaintext, on the model owner's side.

    Only comparison inputs depend on the width: with ``m`` the largest proven comparison input and
    the proof's factor-2 guard band, the width must satisfy ``m <= 2^(l - 1 - f) / 2``, i.e.
    ``l >= f + 2 + log2 m``. Narrower comparisons cost fewer dealer bytes (a ReLU with the default
    ``cmp_tree``: 32.3 at 40 bits, 26.8 at 32, 23.1 at 24) in the same rounds; comparisons inside ``rsqrt``,
    ``reciprocal`` and the clamped ``exp`` keep the width their own domain needs whatever ``l`` is.

    Unlike :func:`check_ranges`, **the result depends on the weights**. If the model owner announces
    it, the data owner learns the largest comparison input of the model within a factor of 2 (about
    ``log2(64 - f)`` bits). Raises ``MPCRangeError`` when a check that does not depend on the width
    fails, or when even 64 bits are not enough.
    """
    config = config or MPCConfig()
    widest = dataclasses.replace(config, cmp_bits=64)
    report = check_ranges(model, input_range, widest)  # raises if the ring or another domain fails
    m = max((c.bound for c in report.checks if c.quantity == "comparison input"), default=0.0)
    f = config.frac_bits
    low = max(f + 2, config.cmp_digits + 1)  # MPCConfig's own lower limits
    bits = max(low, f + 2 + math.ceil(math.log2(m))) if m > 0 else low
    while bits < 64:  # the formula's rounding aside, the proof itself decides
        try:
            check_ranges(model, input_range, dataclasses.replace(config, cmp_bits=bits))
        except MPCRangeError:
            bits += 1
        else:
            break
    return bits


def _check_range_arg(input_range: Any) -> tuple[float, float]:
    ok = isinstance(input_range, tuple | list) and len(input_range) == 2
    if ok:
        try:
            lo, hi = float(input_range[0]), float(input_range[1])
        except (TypeError, ValueError):
            ok = False
        else:
            ok = math.isfinite(lo) and math.isfinite(hi) and lo <= hi
    if not ok:
        raise MPCRangeError(
            "The 'input_range' parameter of private_inference must be a pair (low, high) of finite floats "
            f"with low <= high. Got {input_range!r} instead."
        )
    return lo, hi
