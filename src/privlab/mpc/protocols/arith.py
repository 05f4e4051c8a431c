"""Linear and bilinear protocols: truncation, Beaver multiplication, matmul, conv2d, pooling.

Costs are per output element unless stated; "bytes" count both parties' traffic together.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from privlab._validation import check_int
from privlab.errors import InvalidParameterError
from privlab.mpc.checks import require_abs, require_product
from privlab.mpc.dealer.material import bilinear
from privlab.mpc.encoding import encode
from privlab.mpc.party import Party
from privlab.mpc.stats import counted

_OFFSET = 1 << 62


@counted
def trunc(party: Party, x: torch.Tensor, f: int | None = None) -> torch.Tensor:
    """Divide shared ``x`` by ``2**f`` (probabilistic truncation with a dealer pair).

    Steps: (1) dealer gives ``[r]`` (uniform in Z/2^64) and, with ``u = (r mod 2^63) >> f`` and
    ``m = r >> 63``, ``[v] = [m 2^(63-f) - u]`` and ``[w] = [m 2^(64-f)]``; (2) open
    ``c = x + 2^62 + r`` (uniform, so it hides ``x``); (3) since ``x + 2^62`` lies in ``[0, 2^63)``
    the wrap-around of ``c`` is ``m (1 - c_63)``, so
    ``x >> f = (c mod 2^63) >> f - u + 2^(63-f) (c_63 + (1 - 2 c_63) m) - 2^(62-f)``
    ``= (c mod 2^63) >> f + 2^(63-f) c_63 - 2^(62-f) + v - c_63 w`` locally.
    Rounds 1; bytes 16; dealer ``8 + f/8`` (10 at ``f = 16``: ``w`` is a multiple of ``2^(64-f)``
    and travels as its top ``f`` bits). Error: the result is ``floor(x / 2^f)`` or that plus one
    ulp (never a large error); valid for ``|x| < 2^62``. Perfectly hiding (Escudero et al., 2020).
    """
    f = party.f if f is None else f
    m = party.material("trunc", shape=list(x.shape), f=f)
    return _open_truncated(party, x + m["r"], m["v"], m["w"], f)


def _open_truncated(party: Party, masked: torch.Tensor, v: torch.Tensor, w: torch.Tensor, f: int) -> torch.Tensor:
    """Open ``c = x + r + 2^62`` from shares of ``x + r`` and finish :func:`trunc` locally with
    ``[v] = [m 2^(63-f) - u]`` and ``[w] = [m 2^(64-f)]``."""
    z = masked + _OFFSET if party.rank == 0 else masked
    (c,) = party.open([z])
    c63 = (c < 0).to(torch.int64)
    y = v - c63 * w
    if party.rank == 0:
        low = torch.bitwise_and(c, (1 << 63) - 1)
        y = y + torch.bitwise_right_shift(low, f) + c63 * (1 << (63 - f)) - (1 << (62 - f))
    return y


def _triple_params(
    op: str, a_shape: list[int], b_shape: list[int], kw: dict[str, Any], f: int | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"op": op, "a_shape": a_shape, "b_shape": b_shape, "kw": kw}
    if f is not None:
        params["f"] = f
    return params


def _finish_product(party: Party, z: torch.Tensor, m: dict[str, torch.Tensor], f: int | None) -> torch.Tensor:
    """``z`` holds shares of ``op(x, y)`` (no ``f``) or of ``op(x, y) + r`` (``f``: the triple carried
    the truncation mask); return the product, truncated by ``2^f`` when ``f`` is given."""
    if f is None:
        return z
    return _open_truncated(party, z, m["v"] - m["k"], m["w"], f)


@counted
def div_public(party: Party, x: torch.Tensor, d: int) -> torch.Tensor:
    """Divide shared ``x`` by the public positive integer ``d`` with an error below 2 units of the
    last place, whatever ``|x|`` (valid for ``|x| < 2^62`` ring units).

    The truncation protocol with ``d`` in place of ``2^f``: open ``c = x + 2^62 + r``; then
    ``x + 2^62 = (c mod 2^63) - (r mod 2^63) + 2^63 b`` exactly, with the shared bit
    ``b = c_63 XOR r_63 = c_63 + (1 - 2 c_63) r_63``. Dividing each term by ``d`` and flooring,
    ``y = floor((c mod 2^63) / d) - floor((r mod 2^63) / d) + b floor(2^63 / d) - floor(2^62 / d)``
    differs from ``x / d`` by less than 2 (three floors, each off by less than 1, two of them of
    opposite sign). Rounds 1; bytes 16; dealer 16 per element (``u = floor((r mod 2^63) / d)``
    and ``r_63``). Perfectly hiding, like :func:`trunc`.
    """
    d = check_int(d, "d", "div_public", low=1)
    if d == 1:
        return x
    if d & (d - 1) == 0:  # a power of two: the truncation itself (floor or floor + 1)
        return trunc(party, x, d.bit_length() - 1)
    m = party.material("div", shape=list(x.shape), d=d)
    z = x + m["r"]
    if party.rank == 0:
        z = z + _OFFSET
    (c,) = party.open([z])
    c63 = (c < 0).to(torch.int64)
    b = (1 - 2 * c63) * m["m"]
    if party.rank == 0:
        b = b + c63
    y = b * ((1 << 63) // d) - m["u"]
    if party.rank == 0:
        low = torch.bitwise_and(c, (1 << 63) - 1)
        y = y + torch.div(low, d, rounding_mode="floor") - _OFFSET // d
    return y


@counted
def beaver(
    party: Party, op: str, x: torch.Tensor, y: torch.Tensor, kw: dict[str, Any] | None = None, f: int | None = None
) -> torch.Tensor:
    """``op(x, y)`` of two shared tensors for a bilinear ``op`` (mul, matmul, conv2d); with ``f``,
    truncated by ``2^f`` (the fixed-point rescaling), otherwise exact in the ring.

    Steps: dealer triple ``(a, b, c = op(a, b))``; open ``e = x - a`` and ``d = y - b`` together;
    ``op(x, y) = op(e, d) + op(e, b) + op(a, d) + c``. Rounds 1; bytes ``16 (|x| + |y|)`` (each
    party sends both masked operands); dealer ``8 |op(x, y)|`` bytes. With ``f`` the triple's ``c``
    also carries a truncation mask ``r``, so the same local step gives shares of ``op(x, y) + r``,
    opened at once as the truncation's ``c`` (:func:`trunc`): rounds 2, bytes ``+ 16 |out|``,
    dealer ``(8 + 2 f / 8) |out|`` in all (12 at ``f = 16``, against 18 for a triple and a
    separate truncation: see :func:`privlab.mpc.dealer.material.triple_spec`).
    """
    kw = kw or {}
    require_product(party, "beaver", op, x, y, tuple(y.shape), kw)
    fn = bilinear(op, kw)
    m = party.material("triple", **_triple_params(op, list(x.shape), list(y.shape), kw, f))
    e, d = party.open([x - m["a"], y - m["b"]])
    z = fn(e, m["b"]) + fn(m["a"], d) + m["c"]
    if party.rank == 0:
        z = z + fn(e, d)
    return _finish_product(party, z, m, f)


@counted
def beaver_owned(
    party: Party,
    op: str,
    x: torch.Tensor,
    w: torch.Tensor | None,
    w_shape: tuple[int, ...],
    kw: dict[str, Any] | None = None,
    f: int | None = None,
) -> torch.Tensor:
    """``op(x, w)`` for shared ``x`` and a ``w`` that party 0 holds in the clear (its weights,
    encoded; ``None`` on party 1); no rescaling.

    Steps: dealer triple with ``b`` known to party 0 only; one round in which both send their
    share of ``e = x - a`` and party 0 alone sends ``f = w - b`` (uniform to party 1); party 0
    computes ``op(e, w) + op(a_0, f) + c_0``, party 1 ``op(a_1, f) + c_1``. Rounds 1; bytes
    ``16 |x| + 8 |w|`` (half of :func:`beaver` on the weight side); dealer ``8 |op(x, w)|``.
    Exact in the ring. ``f``: truncated by ``2^f`` with the mask folded into the triple, as in
    :func:`beaver` (rounds 2, dealer ``(8 + 2 f / 8) |out|``).
    """
    kw = kw or {}
    require_product(party, f"beaver_owned ({op})", op, x, w, w_shape, kw, owned=True)
    fn = bilinear(op, kw)
    m = party.material("owned_triple", **_triple_params(op, list(x.shape), list(w_shape), kw, f))
    e_mine = x - m["a"]
    if party.rank == 0:
        if w is None:
            raise InvalidParameterError(
                "The 'w' parameter of beaver_owned must be the owner's encoded weight on party 0. Got None instead."
            )
        d = w - m["b"]
        (e_theirs,) = party.exchange_uneven([e_mine, d], [e_mine])
        return _finish_product(party, fn(e_mine + e_theirs, w) + fn(m["a"], d) + m["c"], m, f)
    _, d = party.exchange_uneven([e_mine], [e_mine, torch.empty(w_shape, dtype=torch.int64)])
    return _finish_product(party, fn(m["a"], d) + m["c"], m, f)


@counted
def mul(party: Party, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fixed-point product of two shared tensors (broadcasting). Rounds 2; bytes 32 + 16; dealer
    ``8 + 2 f/8`` (12 at ``f = 16``: triple ``c`` carrying the truncation mask, ``k`` and ``w``);
    error one ulp (truncation);
    valid while ``|x y| < 2^(62 - 2f)``."""
    require_product(party, "mul", "mul", x, y, tuple(y.shape))
    return beaver(party, "mul", x, y, f=party.f)


@counted
def matmul(party: Party, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fixed-point ``torch.matmul`` of two shared tensors. Rounds 2; bytes ``16 (|x| + |y|) +
    16 |out|``; dealer ``(8 + 2 f/8) |out|``; error one ulp plus the inputs' rounding times ``k``."""
    require_product(party, "matmul", "matmul", x, y, tuple(y.shape))
    return beaver(party, "matmul", x, y, f=party.f)


@counted
def conv2d(party: Party, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, **kw: Any) -> torch.Tensor:
    """Fixed-point ``F.conv2d`` of a shared input and shared weight (+ shared bias). Rounds 2;
    bytes ``16 (|x| + |w|) + 16 |out|``; error one ulp plus input rounding."""
    require_product(party, "conv2d", "conv2d", x, w, tuple(w.shape), kw)
    out = beaver(party, "conv2d", x, w, kw, f=party.f)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


@counted
def mul_public(party: Party, x: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Shared ``x`` times a public real ``c``. Rounds 1; bytes 16 (truncation); error one ulp
    plus ``|x|`` times the encoding error of ``c``. Small scalar constants get up to 16 extra
    fractional bits so that ``x * 1e-4`` keeps its relative precision."""
    extra = 0
    if isinstance(c, int | float) and 0 < abs(c) < 1:
        extra = min(16, math.ceil(-math.log2(abs(c))))
    ct = torch.as_tensor(c, dtype=torch.float64).abs()
    require_abs(party, "mul_public", x, 2.0 ** (62 - 2 * party.f - extra) / 2 / ct.clamp(min=2.0**-40))
    return trunc(party, x * encode(c, party.f + extra), party.f + extra)


def add_public(party: Party, x: torch.Tensor, c: torch.Tensor | float) -> torch.Tensor:
    """Shared ``x`` plus a public real ``c`` (party 0 adds it). Rounds 0."""
    c_t = torch.as_tensor(c, dtype=torch.float64)
    if c_t.numel() and not float(c_t.abs().max()) < 2.0 ** (62 - party.f):  # NaN and inf too
        raise InvalidParameterError(
            f"The 'c' parameter of add_public must be finite with |c| < 2^(62 - frac_bits) = "
            f"{2.0 ** (62 - party.f):.3g}, the fixed-point range. "
            f"Got a value of magnitude {float(c_t.abs().max()):.3g} instead."
        )
    return x + party.public(encode(c_t, party.f).expand_as(x))


@counted
def mean(party: Party, x: torch.Tensor, dim: int | tuple[int, ...], keepdim: bool = False) -> torch.Tensor:
    """Mean over ``dim``: local sum, then exact division by the public count ``n``
    (:func:`div_public`). Rounds 1 (0 when ``n = 1``); bytes 16 per output; error below 2 ulps
    for any ``n`` and any magnitude (a scaling by the encoded ``1/n`` would be off by about
    ``|mean| n 2^-(f+extra+1)``, which grows with the values)."""
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    n = math.prod(x.shape[d] for d in dims)
    s = x.sum(dim=dims, keepdim=keepdim)
    if n == 0:
        raise InvalidParameterError(
            f"The 'dim' parameter of mean must select a non-empty dimension. Got {dim!r} of shape "
            f"{tuple(x.shape)} instead."
        )
    return div_public(party, s, n)


@counted
def avg_pool2d(party: Party, x: torch.Tensor, kernel: int, stride: int | None = None, padding: int = 0) -> torch.Tensor:
    """``F.avg_pool2d`` (``count_include_pad=True``): local window sums and one exact division
    by ``kernel^2`` (:func:`div_public`). Rounds 1; bytes 16 per output element; error below 2
    ulps at any magnitude."""
    stride = kernel if stride is None else stride
    if padding:
        x = F.pad(x, (padding,) * 4)
    s = x.unfold(2, kernel, stride).unfold(3, kernel, stride).sum(dim=(-1, -2))
    return div_public(party, s, kernel * kernel)


@counted
def mul_many(party: Party, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Several independent fixed-point products in the rounds of one (2 rounds in total):
    broadcast each pair, concatenate, one Beaver opening and one truncation, split back."""
    flat_x, flat_y, shapes = [], [], []
    for x, y in pairs:
        require_product(party, "mul_many", "mul", x, y, tuple(y.shape))
        bx, by = torch.broadcast_tensors(x, y)
        shapes.append(bx.shape)
        flat_x.append(bx.reshape(-1))
        flat_y.append(by.reshape(-1))
    z = beaver(party, "mul", torch.cat(flat_x), torch.cat(flat_y), f=party.f)
    out, pos = [], 0
    for s in shapes:
        n = math.prod(s)
        out.append(z[pos : pos + n].reshape(s))
        pos += n
    return out
