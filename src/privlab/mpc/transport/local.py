"""In-process transport: parties are threads exchanging buffers through queues (unit tests)."""

from __future__ import annotations

import queue

import torch

from privlab.errors import MPCError


class LocalTransport:
    """One party's end of an in-process link; messages are copied like a real network would."""

    def __init__(self, rank: int, inboxes: dict[int, queue.Queue[torch.Tensor]], timeout: float) -> None:
        self.rank = rank
        self._inboxes = inboxes
        self.timeout = timeout

    def send(self, dst: int, buf: torch.Tensor) -> None:
        self._inboxes[dst].put(buf.clone())

    def recv(self, src: int, nbytes: int) -> torch.Tensor:
        try:
            buf = self._inboxes[self.rank].get(timeout=self.timeout)
        except queue.Empty:
            raise MPCError(
                f"party {self.rank} received nothing from party {src} within "
                f"{self.timeout} s; the peer died or stopped answering"
            ) from None
        if buf.numel() != nbytes:
            raise MPCError(
                f"party {self.rank} expected {nbytes} bytes from {src}, got "
                f"{buf.numel()}; the parties ran different programs"
            )
        return buf

    def close(self) -> None:
        return None


def local_pair(timeout: float) -> tuple[LocalTransport, LocalTransport]:
    """Two connected in-process transports for ranks 0 and 1."""
    inboxes: dict[int, queue.Queue[torch.Tensor]] = {0: queue.Queue(), 1: queue.Queue()}
    return LocalTransport(0, inboxes, timeout), LocalTransport(1, inboxes, timeout)
