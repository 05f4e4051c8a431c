"""Approximations of non-linear functions on shares: exp, log, reciprocal, sqrt, rsqrt, sigmoid,
tanh, softmax, GELU and LayerNorm.

Each is a composition of ``mul`` (2 rounds: one Beaver opening, 32 bytes/element, plus one
truncation, 16 bytes/element), public scalings (1 round, 16 bytes) and comparisons (5 rounds, ~21
bytes). Errors below are measured against float64 torch over the stated range with ``f = 16``
(the tests check them on random inputs).
"""

from __future__ import annotations

import math

import torch

from privlab._validation import check_int, check_real
from privlab.errors import InvalidParameterError
from privlab.mpc.checks import require_abs, require_range
from privlab.mpc.encoding import encode
from privlab.mpc.party import Party
from privlab.mpc.protocols.arith import (
    add_public,
    beaver,
    mean,
    mul,
    mul_many,
    mul_public,
    trunc,
)
from privlab.mpc.protocols.compare import cmp_limit, drelu, max_last, relu, wide_bits
from privlab.mpc.stats import counted


def _const(party: Party, like: torch.Tensor, c: float) -> torch.Tensor:
    return party.public(encode(c, party.f).expand_as(like).clone())


@counted
def exp(party: Party, x: torch.Tensor, iters: int = 8, clamp: bool = False) -> torch.Tensor:
    """``exp(x)`` by the limit ``(1 + u + u^2 / 2)^(2^n)`` with ``u = x / 2^n``, ``n = iters``.

    Steps: read ``x`` at ``f + n`` fractional bits (that *is* ``u``, no work); optionally
    ``x <- max(x, -2^n)`` (``clamp``, 5 rounds: exp is then ~0 instead of garbage below
    ``-2^n``); ``u^2 / 2`` (1 Beaver round + 1 truncation); the base ``1 + u + u^2 / 2``; ``n``
    squarings at ``f + n`` fractional bits (2 rounds each); a final truncation by ``n`` bits. Rounds
    ``3 + 2n`` (19, or 24 clamped); bytes ``64 + 48 n`` per element (+21 clamped). Error:
    relative ``|x|^3 / (6 * 4^n)`` from the series (1.3e-3 at ``x = 8``) plus 5e-4 relative and
    1e-4 absolute from rounding, on ``[-16, 8]``. Valid on ``[-2^n, h]`` with
    ``h = min(9, (62 - 2 (f + n)) ln 2)`` (9 for ``f = 16, n = 8``; above, the last square wraps the
    ring); clamped, on ``[-(2^(l - 1 - f) + 2^n), h]`` for the clamp's comparison width ``l``
    (about ``-8.4e6`` with the defaults).
    """
    check_int(iters, "iters", "exp", low=1, high=30)
    fw = party.f + iters
    # the last squaring holds exp(x) at 2 fw fractional bits: below 2^62 ring units for x < (62 - 2 fw) ln 2
    hi = min(9.0, (62 - 2 * fw) * math.log(2.0) - 0.05)
    if hi <= 0:
        raise InvalidParameterError(
            f"The 'iters' parameter of exp must leave room in the ring: (62 - 2 (frac_bits + iters)) ln 2 > 0. "
            f"Got iters={iters} with frac_bits={party.f} instead."
        )
    bits = wide_bits(party, fw + 2)
    if clamp:  # the clamp compares x + 2^n at `bits` bits: exact for x + 2^n in [-2^(bits-1-f), 2^(bits-1-f))
        width = party.config.cmp_bits if bits is None else bits
        reach = 2.0 ** (width - 1 - party.f)
        lo, hi = -(reach + 2.0**iters), min(hi, reach - 2.0**iters - 2.0**-party.f)
        text = f"[{lo:.4g}, {hi:.4g}] (clamped)"
    else:
        lo, text = -(2.0**iters), f"[-{2**iters}, {hi:.4g}]"
    require_range(party, "exp", x, lo, hi, text)
    if clamp:  # max(x, -2^n): then u >= -1 and the base lies in [1/2, ...), so exp(-big) ~ 0
        low = party.public(torch.full_like(x, -(1 << fw)))
        x = low + relu(party, x - low, bits=bits)
    u2 = beaver(party, "mul", x, x, f=fw + 1)
    y = x + u2 + party.public(torch.full_like(x, 1 << fw))
    for _ in range(iters):
        y = beaver(party, "mul", y, y, f=fw)
    return trunc(party, y, iters)


def _octave_guess(party: Party, x: torch.Tensor, lo_exp: int, hi_exp: int, power: float) -> torch.Tensor:
    """``x^-power`` up to a factor ``2^(power/2)``: with ``g_k = [x >= 2^k]`` (all comparisons in
    one batch: 5 rounds, ~21 bytes each) the guess ``2^(-power (k + 1/2))`` for ``x`` in
    ``[2^k, 2^(k+1))`` is a public linear combination of the integer bits (local)."""
    ks = torch.arange(lo_exp + 1, hi_exp + 1, dtype=torch.float64)
    thresholds = encode(torch.pow(2.0, ks), party.f)  # [K]
    # |x - 2^k| < 2^(hi_exp + 1) for x below 2^(hi_exp + 1) (LayerNorm's variances reach 2^15 with
    # hi_exp = 14): compared at that width even under a narrower cmp_bits (see compare.wide_bits)
    bits = wide_bits(party, party.f + hi_exp + 3)
    ge = drelu(party, x.unsqueeze(-1) - party.public(thresholds.expand(*x.shape, len(ks)).clone()), bits=bits)
    mids = torch.pow(2.0, -power * (torch.arange(lo_exp, hi_exp + 1, dtype=torch.float64) + 0.5))
    steps = encode(mids[1:] - mids[:-1], party.f)  # [K]
    return (ge * steps).sum(-1) + party.public(encode(mids[0], party.f).expand_as(x).clone())


@counted
def reciprocal(
    party: Party, x: torch.Tensor, lo: float | None = None, hi: float | None = None, iters: int | None = None
) -> torch.Tensor:
    """``1 / x`` for positive ``x`` by Newton iterations ``y <- y (2 - x y)`` (2 products each).

    Without a range: the octave guess (``[x >= 2^k]`` for ``k`` in ``(-14, 14]``, 5 rounds)
    is within a factor ``sqrt(2)`` (relative error 0.41), and 4 iterations bring it to 1e-6.
    Rounds 21; bytes ~1000 per element; valid on ``[6e-5, 16384]`` with error ``2^-f`` absolute
    plus 1e-5 relative (small results have few significant bits: 1/16384 is 4 ulps).
    With a range ``[lo, hi]`` (e.g. a softmax denominator in ``[1, n]``): the minimax linear guess
    ``y0 = c1 (lo + hi - x)``, ``c1 = 8 / (4 lo hi + (lo + hi)^2)``, relative error
    ``E0 = 1 - c1 lo hi``, and ``k`` iterations until ``E0^(2^k) < 2^-20``: rounds ``1 + 4k``
    (13 on ``[1, 2]``, 21 on ``[1, 16]``), bytes ``16 + 96 k``. Diverges outside ``(0, 2 / y0)``.
    """
    if (lo is None) != (hi is None):
        raise InvalidParameterError(
            f"The 'lo' and 'hi' parameters of reciprocal must be given together. Got lo={lo!r}, hi={hi!r} instead."
        )
    if lo is not None and hi is not None:
        lo = check_real(lo, "lo", "reciprocal", low=0.0, low_open=True)
        hi = check_real(hi, "hi", "reciprocal", low=lo)
    if lo is None or hi is None:
        require_range(party, "reciprocal", x, 2.0**-14, 2.0**14, "[2^-14, 2^14] = [6.1e-05, 16384]")
    else:
        require_range(party, "reciprocal", x, lo, hi, f"[{lo:g}, {hi:g}] (its declared range)")
    if lo is None or hi is None:
        y = _octave_guess(party, x, -14, 14, 1.0)
        iters = 4 if iters is None else iters
    else:
        c1 = 8.0 / (4.0 * lo * hi + (lo + hi) ** 2)
        e0 = 1.0 - c1 * lo * hi
        if iters is None and e0 <= 2.0**-20:  # lo == hi: the linear guess is already exact
            iters = 1
        if iters is None:
            iters = max(1, math.ceil(math.log2(math.log(2.0**-20) / math.log(e0))))
        y = add_public(party, mul_public(party, x, -c1), c1 * (lo + hi))
    for _ in range(iters):
        xy = mul(party, x, y)
        y = mul(party, y, add_public(party, -xy, 2.0))
    return y


@counted
def rsqrt(party: Party, x: torch.Tensor, lo_exp: int = -14, hi_exp: int = 14, iters: int = 3) -> torch.Tensor:
    """``1 / sqrt(x)`` for ``x`` in ``[2^lo_exp, 2^hi_exp]`` (default ``[6e-5, 16384]``).

    Steps: (1) the octave guess ``y0 = 2^(-(k + 1/2) / 2)`` for ``x`` in ``[2^k, 2^(k+1))`` from
    ``[x >= 2^k]`` for every ``k`` (one batch of comparisons, 5 rounds, ~21 bytes each), within
    a factor ``2^(1/4)`` of the answer; (2) ``iters`` Newton steps ``y <- y (3 - x y^2) / 2``
    (three products, 6 rounds each; relative error 0.19 -> 0.054 -> 4e-3 -> 3e-5). Rounds
    ``5 + 6 iters`` (23); bytes about ``21 (hi_exp - lo_exp) + 144 iters`` per element (~1000).
    Error below 2e-3 relative (one ulp of ``y`` when ``y`` is small) plus the input's rounding
    (``x`` has absolute precision ``2^-f``). Below the range the guess is too small and the result
    underestimates.
    """
    require_range(party, "rsqrt", x, 2.0**lo_exp, 2.0**hi_exp, f"[2^{lo_exp}, 2^{hi_exp}]")
    y = _octave_guess(party, x, lo_exp, hi_exp, 0.5)
    for _ in range(iters):
        xy = mul(party, x, y)  # ~sqrt(x): precise; y * y would lose small y's digits
        xyy = mul(party, xy, y)
        # y (3 - x y^2) / 2: the halving rides on the truncation (f + 1 bits)
        y = beaver(party, "mul", y, add_public(party, -xyy, 3.0), f=party.f + 1)
    return y


@counted
def sqrt(party: Party, x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x) = x * rsqrt(x)`` on ``[6e-5, 16384]``. Rounds of :func:`rsqrt` + 2 (25); error:
    ``rsqrt``'s absolute ulp times ``x``, i.e. about ``2^-f sqrt(x)`` relative (below 2e-3)."""
    require_range(party, "sqrt", x, 2.0**-14, 2.0**14, "[2^-14, 2^14] = [6.1e-05, 16384]")
    return mul(party, x, rsqrt(party, x))


@counted
def log(party: Party, x: torch.Tensor, iters: int = 2, order: int = 8) -> torch.Tensor:
    """Natural log for ``x`` in ``[0.1, 100]`` by Householder iterations on ``exp``.

    Steps: ``y0 = x / 120 - 20 exp(-2x - 1) + 3``; each iteration ``h = 1 - x exp(-y)``,
    ``y <- y - sum_{k=1..order} h^k / k`` (powers in ``log2 order`` product layers); the
    relative error of the inner ``exp`` becomes the log's absolute error. Rounds about
    ``27 + iters (22 + 2 log2 order)`` (~83); error below 1e-2 absolute.
    """
    require_range(party, "log", x, 0.1, 100.0, "[0.1, 100]")
    e = exp(party, add_public(party, mul_public(party, x, -2.0), -1.0), clamp=True)
    y = add_public(party, mul_public(party, x, 1.0 / 120) - mul_public(party, e, 20.0), 3.0)
    for _ in range(iters):
        h = add_public(party, -mul(party, x, exp(party, -y)), 1.0)
        powers = [h]
        while len(powers) < order:
            top = powers[-1]
            pairs = [(top, p) for p in powers[: order - len(powers)]]
            powers += mul_many(party, pairs)
        y = y - _weighted_sum(party, powers, [1.0 / (k + 1) for k in range(order)])
    return y


def _weighted_sum(party: Party, terms: list[torch.Tensor], w: list[float]) -> torch.Tensor:
    """``sum_k w_k t_k`` with one truncation for all terms (1 round)."""
    acc = sum((t * encode(c, party.f) for t, c in zip(terms, w, strict=True)), torch.zeros_like(terms[0]))
    return trunc(party, acc)


@counted
def sigmoid(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Logistic function (any ``x`` in the comparison range), symmetric so ``exp`` never overflows.

    Steps: ``s = [x >= 0]`` (5 rounds), ``a = |x| = x (2s - 1)`` (1 Beaver round, no rescaling
    since ``2s - 1`` is an integer), ``z = exp(-a)`` in [0, 1] (clamped, 24), ``q = 1 / (1 + z)``
    by :func:`reciprocal` on ``[1, 2]`` (13), ``sigmoid(x) = (1 - s) + (2s - 1) q`` (1). Rounds 44;
    bytes about 1.1 KB per element; error below 2e-3 absolute.
    """
    require_abs(party, "sigmoid", x, cmp_limit(party))
    s = drelu(party, x)
    sgn = 2 * s - (1 if party.rank == 0 else 0)
    a = beaver(party, "mul", x, sgn)
    z = exp(party, -a, clamp=True)
    q = reciprocal(party, add_public(party, z, 1.0), lo=1.0, hi=2.0)
    return _const(party, x, 1.0) - s * (1 << party.f) + beaver(party, "mul", q, sgn)


@counted
def tanh(party: Party, x: torch.Tensor) -> torch.Tensor:
    """``tanh(x) = 2 sigmoid(2x) - 1`` for ``|x| < 2^(cmp_bits - 2 - f)``. Cost of :func:`sigmoid`;
    error 4e-3."""
    require_abs(party, "tanh", x, cmp_limit(party) / 2)
    return add_public(party, 2 * sigmoid(party, 2 * x), -1.0)


_GELU_CLAMP = 4.0
_GELU_DEGREE = 8


def _gelu_tail_coefficients() -> list[float]:
    """Least-squares monomial fit of ``g(a) = a Phi(-a)`` on Chebyshev nodes of ``[0, 4]``."""
    n = 400
    k = torch.arange(n, dtype=torch.float64)
    a = torch.cos(math.pi * (k + 0.5) / n) * _GELU_CLAMP / 2 + _GELU_CLAMP / 2
    g = a * 0.5 * torch.special.erfc(a / math.sqrt(2.0))
    v = torch.stack([a**i for i in range(_GELU_DEGREE + 1)], dim=1)
    return torch.linalg.lstsq(v, g.unsqueeze(1)).solution.squeeze(1).tolist()


_GELU_COEF = _gelu_tail_coefficients()


@counted
def gelu(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Exact-form GELU ``x Phi(x) = relu(x) - g(|x|)`` with ``g(a) = a Phi(-a)``.

    ``g`` is small, even and decays fast (``g(4) = 1.3e-4``), so it is replaced by a degree-8
    polynomial fitted on ``[0, 4]`` and evaluated at ``min(|x|, 4)``. Steps: ``relu(x)`` (5
    rounds; ``|x| = 2 relu(x) - x`` is then local), ``a = 4 - relu(4 - |x|)`` (5), the powers
    ``a^2 .. a^8`` in three product layers (6), one weighted sum with 16 extra fractional bits
    for the small coefficients (1). Rounds 17; bytes ~390 per element; dealer ~280. Error below
    5e-4 absolute (fit 1.3e-4, tail 1.3e-4, rounding) for any ``x`` in the comparison range.
    """
    require_abs(party, "gelu", x, cmp_limit(party))
    r = relu(party, x)
    a_abs = 2 * r - x
    bound = party.public(encode(_GELU_CLAMP, party.f).expand_as(x).clone())
    a = bound - relu(party, bound - a_abs)
    powers = [a]
    while len(powers) < _GELU_DEGREE:
        top = powers[-1]
        powers += mul_many(party, [(top, p) for p in powers[: _GELU_DEGREE - len(powers)]])
    extra = 16
    acc = party.public(encode(_GELU_COEF[0], party.f + extra).expand_as(x).clone())
    for c, p in zip(_GELU_COEF[1:], powers, strict=True):
        acc = acc + p * encode(c, party.f + extra)
    return r - trunc(party, acc, party.f + extra)


@counted
def softmax(party: Party, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along ``dim``: subtract the max (tree of comparisons), ``exp``, normalise.

    Steps: ``m = max`` (``5 ceil(log2 n)`` rounds), ``e = exp(x - m)`` (clamped, 24), ``s = sum e`` in
    ``[1, n]``, ``1/s`` by :func:`reciprocal` on ``[1, n]`` (``1 + 4k`` rounds, k = 5 for
    n = 16), ``e / s`` (2). Rounds ``5 ceil(log2 n) + 27 + 4k`` (67 for n = 16).
    Error below 5e-3 absolute per probability; valid while
    ``|x| < 2^(cmp_bits - 1 - f)``.
    """
    require_abs(party, "softmax", x, cmp_limit(party) / 2)
    n = x.shape[dim]
    if n <= 1:  # softmax of one entry is 1; of none, empty (no communication either way)
        return _const(party, x, 1.0) if x.numel() else x.clone()
    if dim != -1 and dim != x.dim() - 1:
        x = x.transpose(dim, -1)
    m = max_last(party, x)
    e = exp(party, x - m.unsqueeze(-1), clamp=True)
    s = e.sum(dim=-1, keepdim=True)
    r = reciprocal(party, s, lo=1.0, hi=float(x.shape[-1]))
    out = mul(party, e, r)
    if dim != -1 and dim != x.dim() - 1:
        out = out.transpose(dim, -1)
    return out


@counted
def layer_norm(
    party: Party, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-5
) -> torch.Tensor:
    """LayerNorm over the last dimension with shared affine parameters.

    Steps: mean (1 round), centred square and its mean (3), ``rsqrt(var + eps)`` (23), scale
    (2), affine (2). Rounds 31. Valid for variances up to 16384; the variance has absolute
    precision ``2^-f``, so the output's relative error grows like ``2^-f / var`` (about 1.5%
    at ``var = 1e-3``); otherwise the error is
    below 2e-2 absolute on unit-scale outputs.
    """
    mu = mean(party, x, -1, keepdim=True)
    d = x - mu
    require_abs(party, "layer_norm", d, 2.0 ** ((62 - 2 * party.f) / 2 - 0.5))  # d * d stays in the ring
    var = mean(party, mul(party, d, d), -1, keepdim=True)
    require_range(party, "layer_norm", add_public(party, var, eps), None, 0.98 * 2.0**15,
                  "variance + eps <= 0.98 * 2^15 = 32113")
    r = rsqrt(party, add_public(party, var, eps))
    y = mul(party, d, r)
    if weight is not None:
        y = mul(party, y, weight)
    if bias is not None:
        y = y + bias
    return y
