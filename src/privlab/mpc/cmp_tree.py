"""The comparison's digits and AND tree: how ``r mod 2^(bits-1)`` splits into digits, and which
monomials and mask products a tree node of fan-in ``k`` needs (``dealer.material.cmp_spec`` builds
the material, ``protocols.compare`` evaluates the tree; see ``docs/mpc.md``, "Comparison")."""

from __future__ import annotations

import functools
import itertools
import math

import torch


def digit_widths(bits: int, digits: int) -> list[int]:
    """Bits of each of the ``digits`` digits of ``r mod 2^(bits-1)`` (lowest first), as even as
    possible: ``divmod(bits - 1, digits) = (w, e)`` gives the lowest ``e`` digits ``w + 1`` bits and
    the rest ``w`` (40 bits in 8 digits: seven of 5 and a top digit of 4). A digit of width ``w``
    needs a table of ``2^w - 1`` entries: ``T[2^w - 1] = [2^w - 1 < r_i]`` is always 0, so that
    entry is public and never sent."""
    w, e = divmod(bits - 1, digits)
    return [w + 1] * e + [w] * (digits - e)


def _starts(sizes: list[int]) -> torch.Tensor:
    """Where each of consecutive blocks of ``sizes`` starts: ``[0, s_0, s_0 + s_1, ...]``."""
    return torch.tensor([0, *itertools.accumulate(sizes[:-1])], dtype=torch.int64)


def digit_shifts(widths: list[int]) -> torch.Tensor:
    """Where each digit starts inside ``r mod 2^(bits-1)``: the running sum of ``widths``."""
    return _starts(widths)


def table_starts(widths: list[int]) -> torch.Tensor:
    """Where each digit's table starts inside the flat ``tab`` field: digit ``i`` at value ``v``
    is entry ``starts[i] + v`` (tables of ``2^widths[i] - 1`` entries, lowest digit first)."""
    return _starts([(1 << w) - 1 for w in widths])


def split_digits(low: torch.Tensor, widths: list[int]) -> torch.Tensor:
    """The digits of ``low`` (values below ``2^sum(widths)``), lowest first, on a new last axis."""
    masks = torch.tensor([(1 << w) - 1 for w in widths], dtype=torch.int64)
    return torch.bitwise_and(torch.bitwise_right_shift(low.unsqueeze(-1), digit_shifts(widths)), masks)


@functools.cache
def node_terms(k: int) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """The monomials of one fan-in-``k`` node of the comparison tree, as indices into its
    ``2k - 1`` variables ``(lt_0 .. lt_(k-2), eq_1 .. eq_(k-1), eq_0)`` (digit 0 lowest):

        lt = lt_(k-1) XOR  XOR_(j < k-1) lt_j AND eq_(j+1) AND ... AND eq_(k-1)
        eq = eq_0 AND ... AND eq_(k-1)

    (the terms are disjoint events: the highest digit that differs decides). Returns the ``lt``
    monomials (``lt_(k-1)`` is linear and not among them) and the ``eq`` monomial."""
    eq_idx = [2 * k - 2] + [k - 2 + i for i in range(1, k)]  # eq_0, eq_1 .. eq_(k-1)
    lt_terms = tuple(tuple(sorted([j, *eq_idx[j + 1 :]])) for j in range(k - 1))
    return lt_terms, tuple(sorted(eq_idx))


@functools.cache
def node_products(k: int, need_eq: bool) -> tuple[tuple[int, ...], ...]:
    """The mask products a fan-in-``k`` node needs from the dealer: every subset of two or more
    variables of each of its monomials (:func:`node_terms`), sorted. One round evaluates the node:
    open ``u_v = x_v XOR d_v`` for masks ``d_v``; then ``AND_(v in M) x_v = XOR_(S subset of M)
    (AND_(v in M - S) u_v) AND d_S`` with ``d_S = AND_(v in S) d_v``, local given shares of the
    ``d_S`` with ``|S| >= 2`` (the classic masked evaluation of a multilinear polynomial with
    preprocessed mask products). ``need_eq = False`` (the lowest node of a level, whose ``eq``
    never reaches the root) drops ``eq``'s products; fan-in 2: 2 products, or 1 without ``eq``."""
    lt_terms, eq_term = node_terms(k)
    terms = lt_terms + ((eq_term,) if need_eq else ())
    out = {sub for t in terms for r in range(2, len(t) + 1) for sub in itertools.combinations(t, r)}
    return tuple(sorted(out))


def tree_digits(tree: list[int] | tuple[int, ...]) -> int:
    """Digits a comparison tree with these fan-ins (leaves first) combines: their product."""
    return math.prod(tree)


def mask_products(d: torch.Tensor, subsets: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """``AND_(v in S) d[..., v]`` for each ``S`` in ``subsets``, stacked on a new last axis."""
    cols = []
    for sub in subsets:
        c = d[..., sub[0]]
        for v in sub[1:]:
            c = c & d[..., v]
        cols.append(c)
    return torch.stack(cols, dim=-1)
