"""Seeded pseudo-random generators: how parties derive shares without communication."""

from __future__ import annotations

import math

import numpy as np
import torch


class PRG:
    """A PCG64 stream; two holders of the same seed draw the same values in the same order."""

    def __init__(self, seed: int) -> None:
        self._bits = np.random.PCG64(seed)

    def ring(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """Uniform elements of Z/2^64 as an int64 tensor of ``shape``."""
        n = math.prod(shape)
        raw = self._bits.random_raw(n).view(np.int64)
        return torch.from_numpy(raw.reshape(tuple(shape)))

    def bits(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """Uniform bits as a uint8 tensor of 0/1 values of ``shape``."""
        n = math.prod(shape)
        words = self._bits.random_raw(max(1, -(-n // 64)))
        unpacked = np.unpackbits(words.view(np.uint8))[:n]
        return torch.from_numpy(unpacked.reshape(tuple(shape)))


def pack_bits(b: torch.Tensor) -> torch.Tensor:
    """Pack a 0/1 uint8 tensor into bytes (8 bits a byte) for sending."""
    return torch.from_numpy(np.packbits(b.reshape(-1).numpy()))


def unpack_bits(p: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Inverse of :func:`pack_bits` for a tensor of ``shape``."""
    n = math.prod(shape)
    return torch.from_numpy(np.unpackbits(p.numpy())[:n].reshape(tuple(shape)))


def pack_high(v: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ring elements that are multiples of ``2^(64-bits)`` into ``bits`` bits each (their top
    bits; ``bits`` of 8, 16 or 32 as one machine word each, other widths bit-packed)."""
    top = torch.bitwise_right_shift(v.contiguous().reshape(-1), 64 - bits)  # arithmetic shift: sign-extended
    if bits in _WORDS:
        return top.to(_WORDS[bits]).view(torch.uint8)
    u = top.numpy().astype(np.uint64)
    planes = (u[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
    return torch.from_numpy(np.packbits(planes.astype(np.uint8).reshape(-1)))


def unpack_high(p: torch.Tensor, shape: tuple[int, ...] | torch.Size, bits: int) -> torch.Tensor:
    """Inverse of :func:`pack_high`: int64 multiples of ``2^(64-bits)`` of ``shape``."""
    n = math.prod(shape)
    if bits in _WORDS:
        top = p.view(_WORDS[bits]).to(torch.int64)
    else:
        planes = np.unpackbits(p.numpy())[: n * bits].reshape(n, bits).astype(np.uint64)
        u = (planes << np.arange(bits, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
        top = torch.from_numpy(u.view(np.int64).copy())
    return torch.bitwise_left_shift(top, 64 - bits).reshape(tuple(shape))


def high_nbytes(n: int, bits: int) -> int:
    """Bytes that :func:`pack_high` uses for ``n`` elements of ``bits`` bits."""
    return n * bits // 8 if bits in _WORDS else -(-n * bits // 8)


_WORDS = {8: torch.int8, 16: torch.int16, 32: torch.int32}
