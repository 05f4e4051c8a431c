"""In-process transport: parties are threads exchanging buffers through queues (unit tests)."""

from __future__ import annotations

import queue

import torch

from privlab.errors import MPCError
from privlab.mpc.transport.limits import Limits

_FAILED = torch.empty(0, dtype=torch.int8)  # put in a peer's inbox when a party thread fails


class PeerFailedError(MPCError):
    """A party stopped because its peer failed; the peer's own error is the one to report."""


class LocalTransport:
    """One party's end of an in-process link; messages are copied like a real network would."""

    def __init__(
        self, rank: int, inboxes: dict[int, queue.Queue[torch.Tensor]], timeout: float, limits: Limits | None = None
    ) -> None:
        self.rank = rank
        self._inboxes = inboxes
        self.timeout = timeout
        self.limits = limits or Limits(timeout)

    def send(self, dst: int, buf: torch.Tensor) -> None:
        self._inboxes[dst].put(buf.clone())

    def recv(self, src: int, nbytes: int) -> torch.Tensor:
        who = f"party {self.rank}"
        wait, deadline_binds = self.limits.wait(who)
        try:
            buf = self._inboxes[self.rank].get(timeout=wait)
        except queue.Empty:
            if deadline_binds:
                raise self.limits.deadline_error(who) from None
            raise self.limits.timeout_error(who, src) from None
        if buf is _FAILED:
            raise PeerFailedError(f"party {self.rank}: party {src} failed (its own error is reported with this one)")
        if buf.numel() != nbytes:
            raise MPCError(
                f"party {self.rank} expected {nbytes} bytes from {src}, got "
                f"{buf.numel()}; the parties ran different programs"
            )
        return buf

    def close(self) -> None:
        return None

    def fail(self) -> None:
        """Tell the peer at once that this party failed (instead of letting it wait out a timeout)."""
        self._inboxes[1 - self.rank].put(_FAILED)


def local_pair(timeout: float, deadline: float | None = None) -> tuple[LocalTransport, LocalTransport]:
    """Two connected in-process transports for ranks 0 and 1; the run's deadline starts now."""
    inboxes: dict[int, queue.Queue[torch.Tensor]] = {0: queue.Queue(), 1: queue.Queue()}
    limits = Limits.start(timeout, deadline)
    return LocalTransport(0, inboxes, timeout, limits), LocalTransport(1, inboxes, timeout, limits)
