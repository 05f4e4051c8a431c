"""What the dealer hands out: one spec per kind of correlated randomness.

A spec lists the *random* fields (each party draws its share from the seed it shares with the
dealer, so they cost nothing to send) and the *derived* fields (a function of the random values:
party 0 draws its share from its seed, party 1 receives ``value - share0`` (or XOR) from the
dealer). Only party 1's derived fields ever travel, and each travels in as few bits as its value
needs: bits packed 8 a byte, and a ring field whose value is a multiple of ``2^(64-k)``
(``Field.bits = k``) as its top ``k`` bits.

Security (the dealer is trusted and sees no data): party 0's share of a derived field is uniform
in the field's group (Z/2^64, the multiples of ``2^(64-k)``, or bits) and independent of
everything else, so party 1's correction ``value - share0`` is uniform in the same group whatever
the value: neither party's view depends on the material's value, hence not on the data that the
material later masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from privlab.errors import InvalidParameterError
from privlab.mpc.cmp_tree import digit_widths, mask_products, node_products, split_digits, tree_digits
from privlab.mpc.prg import high_nbytes


@dataclass(frozen=True)
class Field:
    """One tensor of material: ring elements (int64) or bits (uint8 0/1, sent packed). A ring
    field with ``bits = k < 64`` holds multiples of ``2^(64-k)`` (shares are uniform multiples;
    a correction travels as its top ``k`` bits)."""

    name: str
    shape: tuple[int, ...]
    binary: bool = False
    owner0: bool = False  # random field known to party 0 only (party 1's share is zero)
    bits: int = 64

    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def nbytes(self) -> int:
        """Bytes of this field on the wire."""
        n = self.numel()
        if self.binary:
            return -(-n // 8)
        return 8 * n if self.bits == 64 else high_nbytes(n, self.bits)


Derive = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Spec:
    """Random fields, derived fields and how to compute the derived values."""

    random: list[Field]
    derived: list[Field]
    derive: Derive


def bilinear(op: str, kw: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The plaintext bilinear map ``op`` (mul, matmul, conv2d with ``kw``) that a triple of kind ``op`` satisfies."""
    if op == "mul":
        return torch.mul
    if op == "matmul":
        return torch.matmul
    if op == "conv2d":
        return lambda a, b: F.conv2d(a, b, **kw)
    raise InvalidParameterError(
        f"The 'op' parameter of triple must be one of 'mul', 'matmul', 'conv2d'. Got {op!r} instead."
    )


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of two shapes (``torch.broadcast_shapes`` imports sympy: slow)."""
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    return tuple(x if y == 1 else y for x, y in zip(pa, pb, strict=True))


def _out_shape(op: str, a: list[int], b: list[int], kw: dict[str, Any]) -> tuple[int, ...]:
    """Output shape of ``op`` without running it (meta tensors would import sympy: slow)."""
    if op == "mul":
        return _broadcast(tuple(a), tuple(b))
    if op == "matmul":
        a2, b2 = (list(a) if len(a) > 1 else [1, *a]), (list(b) if len(b) > 1 else [*b, 1])
        batch = _broadcast(tuple(a2[:-2]), tuple(b2[:-2]))
        out = [*batch, a2[-2], b2[-1]]
        if len(a) == 1:
            out.pop(-2)
        if len(b) == 1:
            out.pop(-1)
        return tuple(out)

    def pair(v: Any) -> tuple[int, int]:
        return (int(v[0]), int(v[1])) if isinstance(v, list | tuple) else (int(v), int(v))

    st, pad, dil = pair(kw.get("stride", 1)), pair(kw.get("padding", 0)), pair(kw.get("dilation", 1))
    hw = [(a[2 + i] + 2 * pad[i] - dil[i] * (b[2 + i] - 1) - 1) // st[i] + 1 for i in (0, 1)]
    return (a[0], b[0], hw[0], hw[1])


def trunc_mask(v: torch.Tensor, s: torch.Tensor, f: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A truncation mask built around a *uniform* ``v``: ``(r, k, w)`` with ``v - k = m 2^(63-f) - u``.

    ``v`` and ``s`` are uniform in Z/2^64. With ``v' = v mod 2^(64-f)``: ``m = 1, u = 2^(63-f) - v'``
    for ``0 < v' <= 2^(63-f)``; ``m = u = 0`` for ``v' = 0``; ``m = 0, u = 2^(64-f) - v'`` above. This
    is a bijection from ``v'`` onto ``{0, 1} x [0, 2^(63-f))``, so ``r = m 2^63 + u 2^f + (s mod 2^f)``
    is uniform in Z/2^64, with ``u = (r mod 2^63) >> f`` and ``m = r >> 63`` as :func:`trunc_spec`
    needs. ``k = v - (m 2^(63-f) - u)`` and ``w = m 2^(64-f)`` are multiples of ``2^(64-f)``.
    """
    half = 1 << (63 - f)
    vp = torch.bitwise_and(v, (1 << (64 - f)) - 1)
    m = ((vp > 0) & (vp <= half)).to(torch.int64)
    small = torch.where(vp <= half, vp, vp - (1 << (64 - f)))  # m 2^(63-f) - u, in (-2^(63-f), 2^(63-f)]
    u = m * half - small
    r = torch.bitwise_left_shift(m, 63) + torch.bitwise_left_shift(u, f) + torch.bitwise_and(s, (1 << f) - 1)
    return r, v - small, torch.bitwise_left_shift(m, 64 - f)


def _check_f(f: int, what: str) -> None:
    if not 1 <= f <= 62:
        raise InvalidParameterError(f"The 'f' parameter of {what} must be in [1, 62]. Got {f!r} instead.")


def _triple(op: str, a_shape: list[int], b_shape: list[int], kw: dict[str, Any], f: int | None, owned: bool) -> Spec:
    fn = bilinear(op, kw)
    out = _out_shape(op, a_shape, b_shape, kw)
    rand = [Field("a", tuple(a_shape)), Field("b", tuple(b_shape), owner0=owned)]
    if f is None:
        return Spec(rand, [Field("c", out)], lambda v: {"c": fn(v["a"], v["b"])})
    _check_f(f, "triple_spec")
    fb = f

    def derive(v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r, k, w = trunc_mask(v["v"], v["s"], fb)
        return {"c": fn(v["a"], v["b"]) + r, "k": k, "w": w}

    rand += [Field("v", out), Field("s", out)]
    return Spec(rand, [Field("c", out), Field("k", out, bits=f), Field("w", out, bits=f)], derive)


def triple_spec(op: str, a_shape: list[int], b_shape: list[int], kw: dict[str, Any], f: int | None = None) -> Spec:
    """Beaver triple ``(a, b, c = op(a, b))`` for a bilinear ``op`` (mul, matmul, conv2d).

    With ``f``, the product's truncation by ``2^f`` is folded in: ``c = op(a, b) + r`` carries the
    truncation mask (so the parties open ``op(x, y) + r`` without ever holding ``op(x, y)``), and the
    truncation's ``v`` is a *random* field (:func:`trunc_mask`); only ``k`` and ``w`` (``f`` bits
    each) are added to ``c``: ``8 + 2 f / 8`` dealer bytes per output (12 at ``f = 16``) instead of
    ``8 + 8 + f / 8`` for a triple and a separate truncation pair.
    """
    return _triple(op, a_shape, b_shape, kw, f, owned=False)


def owned_triple_spec(
    op: str, a_shape: list[int], b_shape: list[int], kw: dict[str, Any], f: int | None = None
) -> Spec:
    """Triple whose ``b`` is known to party 0 alone (for weights party 0 holds in the clear); ``f``
    folds the truncation in as in :func:`triple_spec`."""
    return _triple(op, a_shape, b_shape, kw, f, owned=True)


def trunc_spec(shape: list[int], f: int) -> Spec:
    """Truncation material: random ``r``; derived ``v = m 2^(63-f) - u`` and ``w = m 2^(64-f)``
    where ``u = (r mod 2^63) >> f`` and ``m = r >> 63`` (see ``protocols.arith.trunc``).

    ``w`` is a multiple of ``2^(64-f)``, so it travels as ``f`` bits: the dealer sends
    ``8 + f/8`` bytes per element (10 at ``f = 16``) instead of 16 for ``u`` and ``m``.
    """
    _check_f(f, "trunc_spec")
    s = tuple(shape)

    def derive(v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r = v["r"]
        u = torch.bitwise_right_shift(torch.bitwise_and(r, (1 << 63) - 1), f)
        m = (r < 0).to(torch.int64)
        return {"v": m * (1 << (63 - f)) - u, "w": torch.bitwise_left_shift(m, 64 - f)}

    return Spec([Field("r", s)], [Field("v", s), Field("w", s, bits=f)], derive)


def div_spec(shape: list[int], d: int) -> Spec:
    """Pair for exact division by the public integer ``d``: random ``r``; derived
    ``u = floor((r mod 2^63) / d)`` and ``m = r >> 63`` (``trunc_spec`` is the case ``d = 2^f``)."""
    s = tuple(shape)

    def derive(v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r = v["r"]
        low = torch.bitwise_and(r, (1 << 63) - 1)
        return {"u": torch.div(low, d, rounding_mode="floor"), "m": (r < 0).to(torch.int64)}

    return Spec([Field("r", s)], [Field("u", s), Field("m", s)], derive)


def cmp_spec(shape: list[int], bits: int, tree: list[int], relu: bool = True) -> Spec:
    """Material for DReLU / ReLU (see ``protocols.compare``).

    Random: ``r`` (ring), ``t`` (bit), and per tree level ``j`` (fan-in ``k = tree[j]``, ``m``
    nodes) the variable masks ``d{j}`` (bits, ``(m, 2k - 1)``). Derived: the digit tables
    ``T_i[v] = [v < digit_i(r mod 2^(bits-1))]`` for ``v < 2^w_i - 1`` (``D = prod(tree)``
    digits, ``w_i`` from :func:`digit_widths`; flat in ``tab``, the always-0 last entry not
    sent), ``rtop`` = bit ``bits-1`` of ``r``, ``ta = t`` in the ring, ``rt = r t`` (ReLU only:
    ``relu=False`` for DReLU), and per level the mask products ``q{j}``
    (:func:`node_products`: node 0 without ``eq``'s, then nodes ``1..m-1``). Dealer bytes per
    element: 46.5 for ``bits = 40, tree = (2, 2, 2)`` (``(232 + 1 + 11) / 8 + 16``), 32.25 for
    ``tree = (2, 2, 3)`` (``(108 + 1 + 21) / 8 + 16``); DReLU 8 less.
    """
    s = tuple(shape)
    digits = tree_digits(tree)
    widths = digit_widths(bits, digits)
    rand = [Field("r", s), Field("t", s, True)]
    tab = Field("tab", (*s, sum((1 << w) - 1 for w in widths)), True)
    der = [tab, Field("rtop", s, True), Field("ta", s)]
    if relu:
        der.append(Field("rt", s))
    nodes = digits
    levels = []
    for j, k in enumerate(tree):
        nodes //= k
        low, full = node_products(k, False), node_products(k, True)
        rand.append(Field(f"d{j}", (*s, nodes, 2 * k - 1), True))
        der.append(Field(f"q{j}", (*s, len(low) + (nodes - 1) * len(full)), True))
        levels.append((j, nodes, low, full))

    def derive(v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r = v["r"]
        low_r = torch.bitwise_and(r, (1 << (bits - 1)) - 1)
        dig = split_digits(low_r, widths)
        flat = torch.empty(tab.shape, dtype=torch.uint8)  # digit i's table at [start_i, start_i + 2^w_i - 1)
        i = pos = 0
        while i < digits:  # runs of digits of equal width, each run one comparison against a grid
            n = next((j for j in range(i, digits) if widths[j] != widths[i]), digits) - i
            size = (1 << widths[i]) - 1
            grid = torch.arange(size, dtype=torch.int64)
            flat[..., pos : pos + n * size].unflatten(-1, (n, size)).copy_(grid < dig[..., i : i + n, None])
            i, pos = i + n, pos + n * size
        out = {
            "tab": flat,
            "rtop": torch.bitwise_and(torch.bitwise_right_shift(r, bits - 1), 1).to(torch.uint8),
            "ta": v["t"].to(torch.int64),
        }
        if relu:
            out["rt"] = r * v["t"].to(torch.int64)
        for j, m, low, full in levels:
            d = v[f"d{j}"]
            parts = [mask_products(d[..., 0, :], low)]
            if m > 1:
                parts.append(mask_products(d[..., 1:, :], full).flatten(-2))
            out[f"q{j}"] = torch.cat(parts, dim=-1)
        return out

    return Spec(rand, der, derive)


MATERIALS: dict[str, Callable[..., Spec]] = {
    "triple": triple_spec,
    "owned_triple": owned_triple_spec,
    "trunc": trunc_spec,
    "div": div_spec,
    "cmp": cmp_spec,
}


def make_spec(kind: str, params: dict[str, Any]) -> Spec:
    """The spec of ``kind`` with ``params`` (keyword arguments of its registered builder)."""
    if kind not in MATERIALS:
        raise InvalidParameterError(
            f"The 'kind' parameter of make_spec must be one of "
            f"{', '.join(repr(k) for k in MATERIALS)}. Got {kind!r} instead."
        )
    params = dict(params)
    if kind in ("triple", "owned_triple"):
        params.setdefault("kw", {})
    return MATERIALS[kind](**params)
