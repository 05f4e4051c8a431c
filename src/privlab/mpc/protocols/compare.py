"""Comparison by masked opening and dealer lookup tables: DReLU, ReLU, max, argmax, max-pool.

DReLU(x) = [x >= 0] for ``|x| < 2^(l-1)`` (``l = config.cmp_bits``, ring units):

1. The dealer gives ``[r]`` (uniform in Z/2^64), a random bit ``t`` (XOR-shared and as a ring
   element), ``[r t]`` (ReLU only), the bit ``r_(l-1)``, and for each of the ``D`` digits (``m``
   bits each, the top one cut to the bits left) of ``r mod 2^(l-1)`` an XOR-shared table
   ``T_i[v] = [v < r_i]`` for ``v < 2^(w_i) - 1`` (``T_i[2^(w_i) - 1] = 0`` always: public).
2. Open ``c = x + 2^(l-1) + r`` (1 round, 8 bytes per element each way). Since
   ``x + 2^(l-1)`` lies in ``[0, 2^l)``, ``[x >= 0]`` is its bit ``l-1``:
   ``c_(l-1) XOR r_(l-1) XOR [c mod 2^(l-1) < r mod 2^(l-1)]``.
3. Per digit, the parties read ``lt_i = T_i[c_i]`` and ``eq_i = T_i[c_i - 1] XOR T_i[c_i]`` from
   their table shares at the public index (no communication).
4. Combine digits pairwise, ``lt = lt_hi XOR (eq_hi AND lt_lo)``, ``eq = eq_hi AND eq_lo``:
   ``log2 D`` rounds of AND gates on bits (3 bits per pair each way; the lowest pair of each
   level needs only ``lt``, 2 bits, since its ``eq`` never reaches the root).
5. Open ``e = b XOR t`` (1 round, 1 bit each way); ``[b] = e + (1 - 2e) [t]`` in the ring, and for
   ReLU ``x b = e x + (1 - 2e) ((c - 2^(l-1)) [t] - [r t])`` (``c - 2^(l-1) = x + r`` is public).

With the defaults (``l = 40``, ``D = 8``): **5 rounds and 20.75 bytes per element** (16 for the
opening, ``2 * (11 + 5 + 2)`` bits for the tree, 2 bits for the last step), against CrypTen's
8-9 rounds and ~464 bytes. Dealer: ``sum_i (2^(w_i) - 1) = 7 * 31 + 15`` table bits (the last
entry of a table is always 0), 12 more bits and 16 bytes for ``[t]``, ``[r t]``: 46.5 bytes
(DReLU 38.5). Exact (no error) inside the range;
outside it the result is wrong. Perfectly hiding: ``c`` and ``e`` are uniform, and so are party
1's corrections (``dealer.material``).
"""

from __future__ import annotations

import torch

from privlab.mpc.checks import require_abs
from privlab.mpc.dealer.material import digit_widths, table_starts
from privlab.mpc.party import Party
from privlab.mpc.protocols.arith import beaver
from privlab.mpc.stats import counted


def cmp_limit(party: Party, bits: int | None = None) -> float:
    """The comparison range as a real: ``2^(l - 1 - f)`` with ``l = bits`` or ``cmp_bits``."""
    return 2.0 ** ((party.config.cmp_bits if bits is None else bits) - 1 - party.f)


def wide_bits(party: Party, need: int) -> int | None:
    """The ``bits`` override for a comparison inside a protocol whose inputs need ``need`` bits
    (``|x| < 2^(need - 1)`` ring units) whatever ``cmp_bits`` is: ``None`` (use ``cmp_bits``) when
    ``cmp_bits >= need``, else ``need`` (same rounds with ``cmp_digits >= 8``, wider tables).
    Without it a narrow ``MPCConfig.cmp_bits`` would make e.g. the octave guess of ``rsqrt``
    compare values beyond the range, and the comparison wraps: a wrong result, not an error."""
    return None if party.config.cmp_bits >= need else need


def _and(
    party: Party, m: dict[str, torch.Tensor], j: int, x: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x AND y1, x[..., 1:] AND y2)`` on XOR shares (1 round): nodes ``1..p-1`` use one
    shared-``a`` triple pair (3 bits each way), node 0 needs only ``lt`` (2 bits)."""
    a, b = m[f"a{j}"], m[f"b{j}"]
    if y2.shape[-1] == 0:  # the root: one AND
        d, f1 = party.open_bits([x ^ a, y1 ^ b])
    else:
        d, f1, f2 = party.open_bits([x ^ a, y1 ^ b, y2 ^ m[f"e{j}"]])
    z1 = (d & b) ^ (f1 & a) ^ m[f"ab{j}"]
    if party.rank == 0:
        z1 = z1 ^ (d & f1)
    if y2.shape[-1] == 0:
        return z1, y2
    d1, a1 = d[..., 1:], a[..., 1:]
    z2 = (d1 & m[f"e{j}"]) ^ (f2 & a1) ^ m[f"ae{j}"]
    if party.rank == 0:
        z2 = z2 ^ (d1 & f2)
    return z1, z2


def _sign_bit(
    party: Party, x: torch.Tensor, bits: int | None = None, relu: bool = True
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Steps 1-4: XOR share of ``[x >= 0]``, the opened ``x + r``, and the material. ``bits``
    overrides ``cmp_bits`` (the range checks compare with 62 bits: exact for ``|x| < 2^61``), with
    at least 8 digits. ``relu``: also fetch ``[r t]`` (for the fused multiplication)."""
    cfg = party.config
    l, D, mb = cfg.cmp_bits, cfg.cmp_digits, cfg.digit_bits
    if bits is not None:  # 8 digits of 8 bits for 62-bit checks, whatever cmp_digits is
        D = max(D, 8)
        l, mb = bits, -(-(bits - 1) // D)
    m = party.material("cmp", shape=list(x.shape), bits=l, digits=D, digit_bits=mb, relu=relu)
    half = 1 << (l - 1)
    z = x + m["r"]
    if party.rank == 0:
        z = z + half
    (c,) = party.open([z])
    low = torch.bitwise_and(c, half - 1)
    shifts = torch.arange(D, dtype=torch.int64) * mb
    dig = torch.bitwise_and(torch.bitwise_right_shift(low.unsqueeze(-1), shifts), (1 << mb) - 1)
    widths = digit_widths(l, D, mb)
    pos = dig + table_starts(widths)  # digit i, value v -> entry of the flat tables
    tab = m["tab"]
    top_entry = dig == torch.tensor([(1 << w) - 1 for w in widths])  # T[2^w - 1] = 0, public: not sent
    lt = torch.gather(tab, -1, pos.clamp(max=tab.shape[-1] - 1)) * (~top_entry).to(torch.uint8)
    prev = torch.gather(tab, -1, (pos - 1).clamp(min=0))  # digit i > 0 at v = 0 reads its neighbour: masked below
    below = (dig == 0).to(torch.uint8)  # T[-1] = [-1 < r_i] = 1, a public constant
    prev = prev * (1 - below) + (below if party.rank == 0 else torch.zeros_like(below))
    eq = prev ^ lt
    j = 0
    while lt.shape[-1] > 1:
        lo_lt, hi_lt = lt[..., 0::2], lt[..., 1::2]
        lo_eq, hi_eq = eq[..., 0::2], eq[..., 1::2]
        t1, t2 = _and(party, m, j, hi_eq, lo_lt, lo_eq[..., 1:])
        lt = hi_lt ^ t1  # node 0's eq is never needed: only the lt of the lowest node reaches the root
        eq = torch.cat([torch.zeros_like(t1[..., :1]), t2], dim=-1)
        j += 1
    top = torch.bitwise_and(torch.bitwise_right_shift(c, l - 1), 1).to(torch.uint8)
    b = lt.squeeze(-1) ^ m["rtop"] ^ party.public_bits(top)
    return b, c - half, m


@counted
def drelu(party: Party, x: torch.Tensor, bits: int | None = None) -> torch.Tensor:
    """Ring share of the bit ``[x >= 0]`` (an integer 0/1, not fixed point). See module docstring:
    rounds ``2 + log2 D`` (5), bytes 20.75 per element, dealer 38.5, exact for ``|x| < 2^(cmp_bits-1)`` ring
    units (``bits`` instead of ``cmp_bits`` if given: same rounds and bytes, larger tables)."""
    require_abs(party, "drelu", x, cmp_limit(party, bits))
    b, _, m = _sign_bit(party, x, bits, relu=False)
    (e,) = party.open_bits([b ^ m["t"]])
    e64 = e.to(torch.int64)
    out = (1 - 2 * e64) * m["ta"]
    return out + e64 if party.rank == 0 else out


@counted
def relu(party: Party, x: torch.Tensor, bits: int | None = None) -> torch.Tensor:
    """``max(x, 0)``: DReLU fused with the multiplication ``x * [x >= 0]`` in its last round.
    Rounds 5, bytes 20.75 per element, dealer 46.5; exact inside the comparison range (``bits``
    instead of ``cmp_bits`` if given, as for :func:`drelu`)."""
    require_abs(party, "relu", x, cmp_limit(party, bits))
    b, xr, m = _sign_bit(party, x, bits)
    (e,) = party.open_bits([b ^ m["t"]])
    e64 = e.to(torch.int64)
    xt = xr * m["ta"] - m["rt"]
    return e64 * x + (1 - 2 * e64) * xt


@counted
def ge(party: Party, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Ring share of ``[x >= y]`` (0/1). Same cost as :func:`drelu`."""
    require_abs(party, "ge", x - y, cmp_limit(party))
    return drelu(party, x - y)


@counted
def sign(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Ring share of ``+1`` for ``x >= 0`` and ``-1`` otherwise (integer). Cost of :func:`drelu`."""
    require_abs(party, "sign", x, cmp_limit(party))
    s = 2 * drelu(party, x)
    return s - 1 if party.rank == 0 else s


@counted
def maximum(party: Party, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Elementwise ``max(x, y) = y + relu(x - y)``. Rounds 5, bytes 20.75 per element."""
    require_abs(party, "maximum", x - y, cmp_limit(party))
    return y + relu(party, x - y)


@counted
def max_last(party: Party, x: torch.Tensor) -> torch.Tensor:
    """Max over the last dimension by a pairwise tree: ``ceil(log2 n)`` ReLU layers (5 rounds
    each); ``n - 1`` comparisons per row in total."""
    require_abs(party, "max_last", x, cmp_limit(party) / 2)
    while x.shape[-1] > 1:
        n = x.shape[-1]
        half = n // 2
        a, b = x[..., :half], x[..., half : 2 * half]
        m = maximum(party, a, b)
        x = torch.cat([m, x[..., 2 * half :]], dim=-1) if n % 2 else m
    return x.squeeze(-1)


@counted
def argmax_last(party: Party, x: torch.Tensor) -> torch.Tensor:
    """One-hot ring shares (integers) of the argmax over the last dimension (ties: lowest index).

    Tree: at each level ``g = [a >= b]`` (DReLU, 5 rounds), then one Beaver round selects both
    the value and the one-hot index vector. Rounds ``6 ceil(log2 n)``.
    """
    require_abs(party, "argmax_last", x, cmp_limit(party) / 2)
    n = x.shape[-1]
    onehot = torch.eye(n, dtype=torch.int64).expand(*x.shape, n)
    idx = party.public(onehot.clone())
    vals = x.unsqueeze(-1)  # [..., n, 1]
    while vals.shape[-2] > 1:
        k = vals.shape[-2]
        half = k // 2
        va, vb = vals[..., :half, :], vals[..., half : 2 * half, :]
        ia, ib = idx[..., :half, :], idx[..., half : 2 * half, :]
        g = ge(party, va, vb)  # [..., half, 1]
        both = torch.cat([va - vb, ia - ib], dim=-1)
        sel = beaver(party, "mul", both, g.expand_as(both).contiguous())
        v_new = vb + sel[..., :1]
        i_new = ib + sel[..., 1:]
        if k % 2:
            v_new = torch.cat([v_new, vals[..., 2 * half :, :]], dim=-2)
            i_new = torch.cat([i_new, idx[..., 2 * half :, :]], dim=-2)
        vals, idx = v_new, i_new
    return idx.squeeze(-2)


@counted
def max_pool2d(party: Party, x: torch.Tensor, kernel: int, stride: int | None = None) -> torch.Tensor:
    """``F.max_pool2d`` without padding: windows by strided views, then :func:`max_last`.
    Rounds ``5 ceil(log2 k^2)`` (10 for 2x2); bytes 20.75 per comparison."""
    require_abs(party, "max_pool2d", x, cmp_limit(party) / 2)
    stride = kernel if stride is None else stride
    w = x.unfold(2, kernel, stride).unfold(3, kernel, stride)
    return max_last(party, w.reshape(*w.shape[:4], kernel * kernel))
