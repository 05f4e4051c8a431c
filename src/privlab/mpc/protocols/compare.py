"""Comparison by masked opening and dealer lookup tables: DReLU, ReLU, max, argmax, max-pool.

DReLU(x) = [x >= 0] for ``|x| < 2^(l-1)`` (``l = config.cmp_bits``, ring units):

1. The dealer gives ``[r]`` (uniform in Z/2^64), a random bit ``t`` (XOR-shared and as a ring
   element), ``[r t]`` (ReLU only), the bit ``r_(l-1)``, and for each of the ``D = prod(tree)``
   digits of ``r mod 2^(l-1)`` (widths as even as possible, ``cmp_tree.digit_widths``) an
   XOR-shared table ``T_i[v] = [v < r_i]`` for ``v < 2^(w_i) - 1`` (``T_i[2^(w_i) - 1] = 0``
   always: public).
2. Open ``c = x + 2^(l-1) + r`` (1 round, 8 bytes per element each way). Since
   ``x + 2^(l-1)`` lies in ``[0, 2^l)``, ``[x >= 0]`` is its bit ``l-1``:
   ``c_(l-1) XOR r_(l-1) XOR [c mod 2^(l-1) < r mod 2^(l-1)]``.
3. Per digit, the parties read ``lt_i = T_i[c_i]`` and ``eq_i = T_i[c_i - 1] XOR T_i[c_i]`` from
   their table shares at the public index (no communication).
4. Combine digits in a tree with fan-in ``k = tree[j]`` at level ``j`` (``config.cmp_tree``,
   leaves first), one round per level: a node of ``k`` digits gives
   ``lt = lt_(k-1) XOR lt_(k-2) eq_(k-1) XOR ... XOR lt_0 eq_1 ... eq_(k-1)`` and
   ``eq = eq_0 ... eq_(k-1)``, by opening its ``2k - 1`` masked variables (``2k - 2`` for the
   lowest node of a level, whose ``eq`` never reaches the root) and the dealer's mask products
   (``cmp_tree.node_products``: 2 per fan-in-2 node, 8 per fan-in-3 node, 5 without ``eq``).
5. Open ``e = b XOR t`` (1 round, 1 bit each way); ``[b] = e + (1 - 2e) [t]`` in the ring, and for
   ReLU ``x b = e x + (1 - 2e) ((c - 2^(l-1)) [t] - [r t])`` (``c - 2^(l-1) = x + r`` is public).

With the defaults (``l = 40``, ``tree = (2, 2, 3)``, ``D = 12``): **5 rounds and 23.5 bytes per
element** (16 for the opening, ``2 * (17 + 8 + 4)`` bits for the tree, 2 bits for the last
step), against CrypTen's 8-9 rounds and ~464 bytes. Dealer: ``3 * 15 + 9 * 7 = 108`` table bits
(the last entry of a table is always 0), 1 + 21 more bits and 16 bytes for ``[t]``, ``[r t]``:
32.25 bytes (DReLU 24.25). ``tree = (2, 2, 2)`` (8 digits): 20.75 bytes between the parties and
46.5 from the dealer (``7 * 31 + 15`` table bits); ``(3, 4)``: 4 rounds, 22.5 and 35.1. Wider
digits cost table bits (``2^w - 1`` each), more digits cost AND-tree bits: the default trades
2.75 party bytes for 14.25 dealer bytes.
Exact (no error) inside the range;
outside it the result is wrong. Perfectly hiding: ``c`` and ``e`` are uniform, and so are party
1's corrections (``dealer.material``).
"""

from __future__ import annotations

import itertools

import torch

from privlab.mpc.checks import require_abs
from privlab.mpc.cmp_tree import digit_widths, node_products, node_terms, split_digits, table_starts, tree_digits
from privlab.mpc.party import Party
from privlab.mpc.protocols.arith import beaver
from privlab.mpc.stats import counted


def cmp_limit(party: Party, bits: int | None = None) -> float:
    """The comparison range as a real: ``2^(l - 1 - f)`` with ``l = bits`` or ``cmp_bits``."""
    return 2.0 ** ((party.config.cmp_bits if bits is None else bits) - 1 - party.f)


def wide_bits(party: Party, need: int) -> int | None:
    """The ``bits`` override for a comparison inside a protocol whose inputs need ``need`` bits
    (``|x| < 2^(need - 1)`` ring units) whatever ``cmp_bits`` is: ``None`` (use ``cmp_bits``) when
    ``cmp_bits >= need``, else ``need`` (same rounds when ``cmp_tree`` has 8 digits or more, wider tables).
    Without it a narrow ``MPCConfig.cmp_bits`` would make e.g. the octave guess of ``rsqrt``
    compare values beyond the range, and the comparison wraps: a wrong result, not an error."""
    return None if party.config.cmp_bits >= need else need


def _node_value(
    party: Party, term: tuple[int, ...], u: torch.Tensor, d: torch.Tensor, prod: dict[tuple[int, ...], torch.Tensor]
) -> torch.Tensor:
    """XOR share of ``AND_(v in term) x_v`` from the opened ``u = x XOR d``, this party's mask
    shares ``d`` and mask-product shares ``prod`` (``cmp_tree.node_products``): the XOR over
    ``S`` subset of ``term`` of ``(AND_(v not in S) u_v) AND d_S`` (``d_{}`` = 1, party 0's term)."""
    out = torch.zeros_like(u[..., 0])
    for r in range(len(term) + 1):
        for sub in itertools.combinations(term, r):
            if r == 0 and party.rank == 1:
                continue
            share = torch.ones_like(out) if r == 0 else d[..., sub[0]] if r == 1 else prod[sub]
            for v in term:
                if v not in sub:
                    share = share & u[..., v]
            out = out ^ share
    return out


def _level(
    party: Party, m: dict[str, torch.Tensor], j: int, k: int, lt: torch.Tensor, eq: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One level of the comparison tree (1 round): groups of ``k`` digits (lowest first) become
    one ``(lt, eq)`` each (``cmp_tree.node_terms``). Node 0's ``eq`` never reaches the root: it
    opens ``2k - 2`` masked bits, the others ``2k - 1``; its ``eq`` is returned as 0."""
    lt, eq = lt.unflatten(-1, (-1, k)), eq.unflatten(-1, (-1, k))
    nodes = lt.shape[-2]
    x = torch.cat([lt[..., : k - 1], eq[..., 1:], eq[..., :1]], dim=-1)  # (lt_0.., eq_1.., eq_0)
    d = m[f"d{j}"]
    masked = x ^ d
    if nodes > 1:
        u_low, u_full = party.open_bits([masked[..., 0, :-1].contiguous(), masked[..., 1:, :].contiguous()])
    else:
        (u_low,) = party.open_bits([masked[..., 0, :-1].contiguous()])
        u_full = masked[..., 1:, :]  # empty
    u = torch.cat([torch.cat([u_low, torch.zeros_like(u_low[..., :1])], -1).unsqueeze(-2), u_full], -2)
    low, full = node_products(k, False), node_products(k, True)
    q = m[f"q{j}"]
    q_low, q_full = q[..., : len(low)], q[..., len(low) :].unflatten(-1, (nodes - 1, len(full)))
    prod = {}
    for i, sub in enumerate(full):  # node 0 has only the products without eq_0: zeros elsewhere
        col_low = q_low[..., low.index(sub)] if sub in low else torch.zeros_like(q_low[..., 0])
        prod[sub] = torch.cat([col_low.unsqueeze(-1), q_full[..., i]], dim=-1)
    lt_terms, eq_term = node_terms(k)
    out_lt = lt[..., k - 1]
    for term in lt_terms:
        out_lt = out_lt ^ _node_value(party, term, u, d, prod)
    out_eq = _node_value(party, eq_term, u, d, prod)
    out_eq[..., 0] = 0  # node 0's eq is not computed (its masked eq_0 was not opened)
    return out_lt, out_eq


def _sign_bit(
    party: Party, x: torch.Tensor, bits: int | None = None, relu: bool = True
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Steps 1-4: XOR share of ``[x >= 0]``, the opened ``x + r``, and the material. ``bits``
    overrides ``cmp_bits`` (the range checks compare with all 64 bits: exact on the whole ring), with
    at least 8 digits (``config.cmp_tree``, or ``(2, 2, 2)`` if it has fewer). ``relu``: also
    fetch ``[r t]`` (for the fused multiplication)."""
    cfg = party.config
    l, tree = cfg.cmp_bits, list(cfg.cmp_tree)
    if bits is not None:
        l = bits
        if tree_digits(tree) < 8:
            tree = [2, 2, 2]
    m = party.material("cmp", shape=list(x.shape), bits=l, tree=tree, relu=relu)
    half = 1 << (l - 1)
    z = x + m["r"]
    if party.rank == 0:
        z = z + half
    (c,) = party.open([z])
    low = torch.bitwise_and(c, half - 1)
    widths = digit_widths(l, tree_digits(tree))
    sizes = torch.tensor([(1 << w) - 1 for w in widths], dtype=torch.int64)
    dig = split_digits(low, widths)
    pos = dig + table_starts(widths)  # digit i, value v -> entry of the flat tables
    tab = m["tab"]
    top_entry = dig == sizes  # T[2^w - 1] = 0, public: not sent
    lt = torch.gather(tab, -1, pos.clamp(max=tab.shape[-1] - 1)) * (~top_entry).to(torch.uint8)
    prev = torch.gather(tab, -1, (pos - 1).clamp(min=0))  # digit i > 0 at v = 0 reads its neighbour: masked below
    below = (dig == 0).to(torch.uint8)  # T[-1] = [-1 < r_i] = 1, a public constant
    prev = prev * (1 - below) + (below if party.rank == 0 else torch.zeros_like(below))
    eq = prev ^ lt
    for j, k in enumerate(tree):
        lt, eq = _level(party, m, j, k, lt, eq)
    top = torch.bitwise_and(torch.bitwise_right_shift(c, l - 1), 1).to(torch.uint8)
    b = lt.squeeze(-1) ^ m["rtop"] ^ party.public_bits(top)
    return b, c - half, m


@counted
def drelu(party: Party, x: torch.Tensor, bits: int | None = None) -> torch.Tensor:
    """Ring share of the bit ``[x >= 0]`` (an integer 0/1, not fixed point). See module docstring:
    rounds ``2 + len(cmp_tree)`` (5), bytes 23.5 per element, dealer 24.25 (defaults), exact for
    ``|x| < 2^(cmp_bits-1)`` ring units (``bits`` instead of ``cmp_bits`` if given: same rounds
    and bytes, larger tables)."""
    require_abs(party, "drelu", x, cmp_limit(party, bits))
    b, _, m = _sign_bit(party, x, bits, relu=False)
    (e,) = party.open_bits([b ^ m["t"]])
    e64 = e.to(torch.int64)
    out = (1 - 2 * e64) * m["ta"]
    return out + e64 if party.rank == 0 else out


@counted
def relu(party: Party, x: torch.Tensor, bits: int | None = None) -> torch.Tensor:
    """``max(x, 0)``: DReLU fused with the multiplication ``x * [x >= 0]`` in its last round.
    Rounds 5, bytes 23.5 per element, dealer 32.25 (defaults); exact inside the comparison range (``bits``
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
    """Elementwise ``max(x, y) = y + relu(x - y)``. Rounds and bytes of :func:`relu`."""
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
        # adjacent pairs (2j, 2j + 1): winners stay in index order, so ties go to the lowest index
        va, vb = vals[..., 0 : 2 * half : 2, :], vals[..., 1 : 2 * half : 2, :]
        ia, ib = idx[..., 0 : 2 * half : 2, :], idx[..., 1 : 2 * half : 2, :]
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
    Rounds ``5 ceil(log2 k^2)`` (10 for 2x2); bytes per comparison those of :func:`relu`."""
    require_abs(party, "max_pool2d", x, cmp_limit(party) / 2)
    stride = kernel if stride is None else stride
    w = x.unfold(2, kernel, stride).unfold(3, kernel, stride)
    return max_last(party, w.reshape(*w.shape[:4], kernel * kernel))
