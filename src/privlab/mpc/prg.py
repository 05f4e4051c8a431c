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
