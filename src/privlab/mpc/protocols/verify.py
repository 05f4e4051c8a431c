"""Evaluate the recorded range checks (``privlab.mpc.checks``) before a value is revealed.

Steps, all recorded checks at once: (1) for each product, a *shadow* at low precision that
cannot wrap: both operands truncated by ``s = f - 4`` bits (one truncation round for all), one
Beaver opening for all shadows (1 round), giving ``op(x, y)`` at ``2 (f - s) = 8`` fractional
bits, off by at most ``k (|x| + |y|) 2^-4`` (``k``: the inner size). The shadow itself cannot
wrap while every operand is below ``B_k = 2^floor((62 - 2 (f - s) - ceil(log2 k)) / 2)`` (real;
``2^27`` for a product of two numbers, ``2^22`` for an inner size of 784), so the operands are
checked against ``B_k`` too: a product of larger operands is refused even when it is small.
(2) every bound becomes a comparison ``v >= 0`` (``x - lo``, ``hi - x``, ``T - shadow``,
``shadow + T`` with ``T = 3/4 * 2^(62 - 2f)``, ``B_k -+ operand``), all in one DReLU over the
whole 64-bit ring (5 rounds; exact for every ring element, so no value the ring holds passes a
bound it violates); (3) the per-check counts of violations are opened (1 round). Rounds: 6, or 8
with products; bytes about 23.5 per compared element (plus 48 per shadow-product element);
dealer about 69 per compared element (64-bit tables; 61 at the 62 bits used before, which
wrapped). What is revealed: the number of violating elements of each check.
"""

from __future__ import annotations

import math

import torch

from privlab.errors import MPCRangeError
from privlab.mpc.checks import PRODUCT_FLAG, Domain, Product
from privlab.mpc.dealer.material import bilinear
from privlab.mpc.party import Party
from privlab.mpc.protocols.arith import trunc
from privlab.mpc.protocols.compare import drelu

WIDE_BITS = 64  # the whole ring: a narrower check wraps for |v| >= 2^(WIDE_BITS - 1) ring units


def _flat_trunc(party: Party, xs: list[torch.Tensor], s: int) -> list[torch.Tensor]:
    if not xs:
        return []
    z = trunc(party, torch.cat([x.reshape(-1) for x in xs]), s)
    out, pos = [], 0
    for x in xs:
        out.append(z[pos : pos + x.numel()].reshape(x.shape))
        pos += x.numel()
    return out


def _share_of(p: Product) -> torch.Tensor:
    if p.y is None:
        raise MPCRangeError(f"The product check of {p.op} has no second operand.")
    return p.y


def inner_size(p: Product) -> int:
    """The number of products summed into one output element of ``p`` (1 for an elementwise mul)."""
    if p.kind == "matmul":
        return p.y_shape[-2] if len(p.y_shape) > 1 else p.y_shape[0]
    if p.kind == "conv2d":
        return math.prod(p.y_shape[1:])
    return 1


def operand_bound_bits(p: Product, cut_frac_bits: int) -> int:
    """``log2 B_k``: operands below ``B_k`` (real) keep the shadow product below ``2^62`` ring units."""
    return (62 - 2 * cut_frac_bits - math.ceil(math.log2(max(inner_size(p), 1)))) // 2


def _shadows(party: Party, prods: list[Product]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Shares of each product at ``2 (f - s)`` fractional bits from truncated operands, and those
    truncated operands (at ``f - s`` bits)."""
    f = party.f
    s = max(0, f - 4)
    shared = [p.x for p in prods] + [_share_of(p) for p in prods if not p.owned]
    cut = _flat_trunc(party, shared, s) if s else shared
    xs, ys_shared = cut[: len(prods)], iter(cut[len(prods) :])
    ys = []
    for p in prods:
        if p.owned:  # party 0's own weight: cut locally, then shared without communication
            z = party.pair_prg.ring(p.y_shape)  # as ``sharing.share`` does: no communication
            if party.rank == 0:
                if p.y is None:
                    raise MPCRangeError("The owner's weight is missing on party 0 for a product check.")
                z = torch.bitwise_right_shift(p.y, s) - z
            ys.append(z)
        else:
            ys.append(next(ys_shared))
    mats = [
        party.material("triple", op=p.kind, a_shape=list(x.shape), b_shape=list(y.shape), kw=p.kw)
        for p, x, y in zip(prods, xs, ys, strict=True)
    ]
    masked = [t for x, y, m in zip(xs, ys, mats, strict=True) for t in (x - m["a"], y - m["b"])]
    opened = party.open(masked)
    out = []
    for i, (p, m) in enumerate(zip(prods, mats, strict=True)):
        e, g = opened[2 * i], opened[2 * i + 1]
        fn = bilinear(p.kind, p.kw)
        z = fn(e, m["b"]) + fn(m["a"], g) + m["c"]
        out.append(z + fn(e, g) if party.rank == 0 else z)
    return out, xs, ys


def verify(party: Party) -> None:
    """Run and clear the pending checks; raise ``MPCRangeError`` (on both parties) if any fails."""
    pending, party.pending = party.pending, []
    if not pending:
        return
    party.range_checks = False  # the check's own protocols record nothing
    try:
        opened = _run(party, pending)
    finally:
        party.range_checks = True
    failures = [(c, int(k)) for c, k in zip(pending, opened.tolist(), strict=True) if k]
    if failures:
        raise MPCRangeError("; ".join(_describe(party, c, k) for c, k in failures) + ". The result was not revealed.")


def _run(party: Party, pending: list[Domain | Product]) -> torch.Tensor:
    with party.counter.scope("range_check"):
        prods = [c for c in pending if isinstance(c, Product)]
        sh_list, xs, ys = _shadows(party, prods) if prods else ([], [], [])
        shadows = iter(zip(sh_list, xs, ys, strict=True))
        cut = party.f - max(0, party.f - 4)
        t = int(PRODUCT_FLAG * 2.0 ** (62 - 2 * party.f + 2 * cut))
        tests: list[list[torch.Tensor]] = []
        for c in pending:
            if isinstance(c, Domain):
                vs = []
                if c.lo is not None:
                    vs.append(c.x - party.public(c.lo.expand_as(c.x).clone()))
                if c.hi is not None:
                    vs.append(party.public(c.hi.expand_as(c.x).clone()) - c.x)
            else:
                sh, xc, yc = next(shadows)
                tt = party.public(torch.full_like(sh, t))
                vs = [tt - sh, sh + tt]
                b = 1 << (operand_bound_bits(c, cut) + cut)  # B_k in the cut operands' units
                for op in (xc, yc):
                    bb = party.public(torch.full_like(op, b))
                    vs += [bb - op, op + bb]
            tests.append(vs)
        flat = [v.reshape(-1) for vs in tests for v in vs]
        ok = drelu(party, torch.cat(flat), bits=WIDE_BITS)
        counts, pos = [], 0
        for vs in tests:
            n = sum(v.numel() for v in vs)
            bad = -ok[pos : pos + n].sum()
            counts.append(bad + n if party.rank == 0 else bad)
            pos += n
        (opened,) = party.open([torch.stack(counts)])
    return opened


def _describe(party: Party, c: Domain | Product, k: int) -> str:
    if isinstance(c, Domain):
        return f"privlab.mpc.{c.op}: {k} of {c.x.numel()} input values lie outside its valid range {c.text}"
    lim = 2.0 ** (62 - 2 * party.f)
    bound = operand_bound_bits(c, party.f - max(0, party.f - 4))
    return (
        f"privlab.mpc.{c.op}: {k} bound violations among its {c.x.numel()}-by-{math.prod(c.y_shape)} "
        f"operands and their products: a product reaches |x y| >= {PRODUCT_FLAG:g} * 2^{62 - 2 * party.f} "
        f"= {PRODUCT_FLAG * lim:.3g} (the fixed-point ring wraps at 2^(62 - 2*frac_bits) = {lim:.3g}, "
        f"frac_bits={party.f}), or an operand reaches 2^{bound} = {2.0**bound:.3g}, past which the check's "
        f"own low-precision product over an inner size of {inner_size(c)} could wrap"
    )

