"""Runtime range checks for protocols called directly on shares (``MPCConfig.range_checks``).

A protocol cannot see its secret inputs, so it cannot refuse an out-of-domain value on the
spot. Instead the outermost protocol of each call *records* what must hold (``require_*``):
an input inside ``[lo, hi]`` (e.g. a reciprocal's ``[2^-14, 2^14]``, a comparison's
``|x| < 2^(cmp_bits - 1 - f)``) or a product ``|x y|`` below the ring's limit ``2^(62 - 2f)``.
Before the next value is revealed, :func:`privlab.mpc.protocols.verify.verify` evaluates all
recorded checks in one batch and opens, to both parties, **only the number of violating
elements per check** (0 in every run that goes on); a non-zero count raises
:class:`~privlab.errors.MPCRangeError` naming the operation and its range, and the value is not
revealed. Nested protocols (the products inside ``exp``, the comparisons inside ``sigmoid``)
record nothing: their inputs are in range whenever the outer operation's are.

``private_inference`` proves the ranges in plaintext instead (``privlab.mpc.bounds``) and runs
with these checks off, so inference pays nothing for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# products are flagged from 3/4 of the ring's limit 2^(62 - 2f) on (a shadow product at low
# precision is compared, see verify.py): below 1/2 of it they are never flagged
PRODUCT_FLAG = 0.75


@dataclass
class Domain:
    """``x`` (a share) must lie in ``[lo, hi]`` (ring units, broadcastable; ``None``: unbounded)."""

    op: str
    text: str
    x: torch.Tensor
    lo: torch.Tensor | None
    hi: torch.Tensor | None


@dataclass
class Product:
    """``op(x, y)`` (mul, matmul, conv2d) must stay below the ring's product limit. ``y`` is a
    share, or party 0's plaintext encoded weight when ``owned`` (``None`` on party 1)."""

    op: str
    kind: str
    x: torch.Tensor
    y: torch.Tensor | None
    y_shape: tuple[int, ...]
    kw: dict[str, Any]
    owned: bool = False


def _active(party: Any) -> bool:
    return bool(getattr(party, "range_checks", False)) and getattr(party, "op_depth", 0) == 1


def require_range(party: Any, op: str, x: torch.Tensor, lo: float | None, hi: float | None, text: str) -> None:
    """Record that the real value of ``x`` must lie in ``[lo, hi]`` (either end may be ``None``)."""
    if not _active(party) or x.numel() == 0:
        return
    f = party.f
    # rounded inwards to ring units: a positive lo below one ulp must not admit 0 (a reciprocal's pole)
    lo_t = None if lo is None else torch.ceil(torch.as_tensor(lo, dtype=torch.float64) * 2.0**f).to(torch.int64)
    hi_t = None if hi is None else torch.floor(torch.as_tensor(hi, dtype=torch.float64) * 2.0**f).to(torch.int64)
    party.pending.append(Domain(op, text, x, lo_t, hi_t))


def require_abs(party: Any, op: str, x: torch.Tensor, limit: float | torch.Tensor) -> None:
    """Record ``-limit <= x < limit`` (real), the domain of a comparison of ``x`` with 0."""
    if not _active(party) or x.numel() == 0:
        return
    f = party.f
    lim = torch.ceil(torch.as_tensor(limit, dtype=torch.float64).clamp(max=2.0**44) * 2.0**f).to(torch.int64) - 1
    shown = f"{float(torch.as_tensor(limit).min()):.4g}"
    party.pending.append(Domain(op, f"[-{shown}, {shown})", x, -lim - 1, lim))


def require_product(
    party: Any,
    op: str,
    kind: str,
    x: torch.Tensor,
    y: torch.Tensor | None,
    y_shape: tuple[int, ...],
    kw: dict[str, Any] | None = None,
    owned: bool = False,
) -> None:
    """Record that the fixed-point product ``kind(x, y)`` must stay below ``2^(62 - 2f)``."""
    if not _active(party) or x.numel() == 0:
        return
    party.pending.append(Product(op, kind, x, y, tuple(y_shape), dict(kw or {}), owned))
