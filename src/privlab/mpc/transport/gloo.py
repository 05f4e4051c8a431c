"""torch.distributed (gloo over TCP) transport: rank 0 and 1 are the parties, rank 2 the dealer."""

from __future__ import annotations

import time
from datetime import timedelta

import torch
import torch.distributed as dist

from privlab.errors import MPCError
from privlab.mpc.transport.limits import Limits

DEALER_RANK = 2


class Heartbeat:
    """Time of the last completed message; a watchdog compares it with the timeout."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.busy = False

    def beat(self) -> None:
        self.last = time.monotonic()


def wait_work(work: dist.Work, limits: Limits, who: str, peer: int, hb: Heartbeat) -> None:
    wait, deadline_binds = limits.wait(who)
    hb.busy = True
    start = time.monotonic()
    try:
        work.wait(timeout=timedelta(seconds=wait))
    except Exception as exc:  # gloo raises RuntimeError on timeout or a closed connection
        if deadline_binds and limits.deadline_at is not None and time.monotonic() >= limits.deadline_at - 0.1:
            raise limits.deadline_error(who) from exc
        waited = time.monotonic() - start
        raise limits.timeout_error(who, peer, f"gloo: {exc}".strip(), waited=waited) from exc
    finally:
        hb.busy = False
    hb.beat()


HEADER_BYTES = 8
"""Each gloo message starts with its payload's length (int64): gloo accepts a message shorter than
the receive buffer and leaves the rest as it was, so the length is what tells the receiver. The
header is framing, like TCP's: the byte counters (``CommCounter``) count payloads only, as CrypTen's do."""


def _post(op: str, buf: torch.Tensor, peer: int, who: str) -> dist.Work:
    """``dist.isend``/``dist.irecv`` of ``buf``; a peer already gone is an ``MPCError``, not gloo's RuntimeError."""
    try:
        work = (dist.isend if op == "send" else dist.irecv)(buf, peer)
    except RuntimeError as exc:
        raise MPCError(
            f"{who} could not {op} a message {'to' if op == 'send' else 'from'} rank {peer}: "
            f"the peer died or closed the connection (gloo: {exc})"
        ) from exc
    if work is None:  # pragma: no cover - gloo always returns a handle
        raise MPCError(f"gloo {op} returned no handle")
    return work


class GlooTransport:
    """Point-to-point messages over an initialised gloo process group, each framed with its length."""

    def __init__(self, rank: int, timeout: float, hb: Heartbeat, limits: Limits | None = None) -> None:
        self.rank = rank
        self.timeout = timeout
        self.limits = limits or Limits(timeout)
        self.hb = hb
        self._pending: list[tuple[dist.Work, int]] = []
        self._keep: list[torch.Tensor] = []  # send buffers stay alive until their send completes

    def send(self, dst: int, buf: torch.Tensor) -> None:
        if buf.numel() == 0:
            return
        payload = buf.contiguous().reshape(-1).view(torch.uint8)  # raw bytes, whatever the dtype
        framed = torch.empty(HEADER_BYTES + payload.numel(), dtype=torch.uint8)
        framed[:HEADER_BYTES] = torch.tensor([payload.numel()], dtype=torch.int64).view(torch.uint8)
        framed[HEADER_BYTES:] = payload
        work = _post("send", framed, dst, f"rank {self.rank}")
        self._pending.append((work, dst))
        self._keep.append(framed)

    def recv(self, src: int, nbytes: int) -> torch.Tensor:
        """``nbytes`` from ``src``; ``MPCError`` if the message has another length (the parties ran
        different programs) or none arrives within the timeout."""
        framed = torch.zeros(HEADER_BYTES + nbytes, dtype=torch.uint8)  # zeros: never uninitialised memory
        if nbytes:
            who = f"rank {self.rank}"
            wait_work(_post("recv", framed, src, who), self.limits, who, src, self.hb)
            got = int(framed[:HEADER_BYTES].view(torch.int64)[0])
            if got != nbytes:
                raise MPCError(
                    f"{who} expected {nbytes} bytes from rank {src}, got {got}; the parties ran different programs"
                )
        for w, dst in self._pending:
            wait_work(w, self.limits, f"rank {self.rank} (sending)", dst, self.hb)
        self._pending.clear()
        self._keep.clear()
        return framed[HEADER_BYTES:]

    def close(self) -> None:
        for w, dst in self._pending:
            wait_work(w, self.limits, f"rank {self.rank} (sending)", dst, self.hb)
        self._pending.clear()
        self._keep.clear()
