"""The transport interface and the byte framing shared by all transports."""

from __future__ import annotations

from typing import Protocol

import torch


def pack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors' raw bytes into one uint8 buffer (one message, one round)."""
    parts = [t.contiguous().reshape(-1).view(torch.uint8) for t in tensors]
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.uint8)


def unpack(buf: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Split a buffer made by :func:`pack` back into tensors shaped and typed like ``like``."""
    out = []
    pos = 0
    for t in like:
        n = t.numel() * t.element_size()
        out.append(buf[pos : pos + n].clone().view(t.dtype).reshape(t.shape))
        pos += n
    return out


class Transport(Protocol):
    """Point-to-point messages between party ranks 0 and 1; ``timeout`` in seconds."""

    def send(self, dst: int, buf: torch.Tensor) -> None:
        """Send a uint8 buffer to ``dst`` without waiting for it to be received."""

    def recv(self, src: int, nbytes: int) -> torch.Tensor:
        """Receive a uint8 buffer of ``nbytes`` from ``src``; ``MPCError`` after the timeout."""

    def close(self) -> None:
        """Release resources."""
