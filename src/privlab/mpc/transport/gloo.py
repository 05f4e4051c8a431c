"""torch.distributed (gloo over TCP) transport: rank 0 and 1 are the parties, rank 2 the dealer."""

from __future__ import annotations

import time
from datetime import timedelta

import torch
import torch.distributed as dist

from privlab.errors import MPCError

DEALER_RANK = 2


class Heartbeat:
    """Time of the last completed message; a watchdog compares it with the timeout."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.busy = False

    def beat(self) -> None:
        self.last = time.monotonic()


def _wait(work: dist.Work, timeout: float, what: str, hb: Heartbeat) -> None:
    hb.busy = True
    try:
        work.wait(timeout=timedelta(seconds=timeout))
    except Exception as exc:  # gloo raises RuntimeError on timeout or a closed connection
        raise MPCError(f"{what} failed after at most {timeout} s: {exc}".strip()) from exc
    finally:
        hb.busy = False
    hb.beat()


class GlooTransport:
    """Point-to-point messages over an initialised gloo process group."""

    def __init__(self, rank: int, timeout: float, hb: Heartbeat) -> None:
        self.rank = rank
        self.timeout = timeout
        self.hb = hb
        self._pending: list[tuple[dist.Work, torch.Tensor]] = []

    def send(self, dst: int, buf: torch.Tensor) -> None:
        if buf.numel() == 0:
            return
        buf = buf.contiguous()
        work = dist.isend(buf, dst)
        if work is None:  # pragma: no cover - gloo always returns a handle
            raise MPCError("gloo isend returned no handle")
        self._pending.append((work, buf))

    def recv(self, src: int, nbytes: int) -> torch.Tensor:
        out = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes:
            work = dist.irecv(out, src)
            if work is None:  # pragma: no cover
                raise MPCError("gloo irecv returned no handle")
            _wait(work, self.timeout, f"party {self.rank} waiting for rank {src}", self.hb)
        for w, _ in self._pending:
            _wait(w, self.timeout, f"party {self.rank} sending", self.hb)
        self._pending.clear()
        return out

    def close(self) -> None:
        for w, _ in self._pending:
            _wait(w, self.timeout, f"party {self.rank} sending", self.hb)
        self._pending.clear()
