"""Fixed-point encoding of real tensors into the ring Z/2^64 (int64 with wrap-around)."""

from __future__ import annotations

import torch

RING_BITS = 64


def encode(x: torch.Tensor | float, frac_bits: int) -> torch.Tensor:
    """Return ``round(x * 2**frac_bits)`` as int64 (the ring element of the real ``x``)."""
    t = torch.as_tensor(x, dtype=torch.float64)
    return torch.round(t * float(2**frac_bits)).to(torch.int64)


def decode(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """Inverse of :func:`encode`: interpret int64 as signed and divide by ``2**frac_bits``."""
    return x.to(torch.float64) / float(2**frac_bits)


def to_unsigned_bits(x: torch.Tensor, lo: int, n: int) -> torch.Tensor:
    """Bits ``lo .. lo+n-1`` of int64 ``x`` (two's complement) as an int64 in ``[0, 2**n)``."""
    shifted = torch.bitwise_right_shift(x, lo)
    if n >= 64:
        return shifted
    return torch.bitwise_and(shifted, (1 << n) - 1)
