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
    try:
        work.wait(timeout=timedelta(seconds=wait))
    except Exception as exc:  # gloo raises RuntimeError on timeout or a closed connection
        if deadline_binds and limits.deadline_at is not None and time.monotonic() >= limits.deadline_at - 0.1:
            raise limits.deadline_error(who) from exc
        raise limits.timeout_error(who, peer, f"gloo: {exc}".strip()) from exc
    finally:
        hb.busy = False
    hb.beat()


class GlooTransport:
    """Point-to-point messages over an initialised gloo process group."""

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
        buf = buf.contiguous()
        work = dist.isend(buf, dst)
        if work is None:  # pragma: no cover - gloo always returns a handle
            raise MPCError("gloo isend returned no handle")
        self._pending.append((work, dst))
        self._keep.append(buf)

    def recv(self, src: int, nbytes: int) -> torch.Tensor:
        out = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes:
            work = dist.irecv(out, src)
            if work is None:  # pragma: no cover
                raise MPCError("gloo irecv returned no handle")
            wait_work(work, self.limits, f"rank {self.rank}", src, self.hb)
        for w, dst in self._pending:
            wait_work(w, self.limits, f"rank {self.rank} (sending)", dst, self.hb)
        self._pending.clear()
        self._keep.clear()
        return out

    def close(self) -> None:
        for w, dst in self._pending:
            wait_work(w, self.limits, f"rank {self.rank} (sending)", dst, self.hb)
        self._pending.clear()
        self._keep.clear()
