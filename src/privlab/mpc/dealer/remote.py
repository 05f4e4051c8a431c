"""The dealer as a separate process (gloo rank 2) and party 1's link to it."""

from __future__ import annotations

import torch

from privlab.mpc.dealer.core import DealerCore
from privlab.mpc.transport.gloo import DEALER_RANK, GlooTransport, Heartbeat
from privlab.mpc.transport.limits import Limits

_STOP = -1


class GlooDealerLink:
    """Party 1's channel to the dealer process (rank 2)."""

    def __init__(self, transport: GlooTransport) -> None:
        self.t = transport

    def post(self, payload: bytes) -> None:
        header = torch.tensor([len(payload)], dtype=torch.int64).view(torch.uint8)
        self.t.send(DEALER_RANK, header)
        self.t.send(DEALER_RANK, torch.frombuffer(bytearray(payload), dtype=torch.uint8))

    def reply(self, reply_bytes: int) -> torch.Tensor:
        return self.t.recv(DEALER_RANK, reply_bytes)

    def stop(self) -> None:
        self.t.send(DEALER_RANK, torch.tensor([_STOP], dtype=torch.int64).view(torch.uint8))
        self.t.close()


def serve_dealer(core: DealerCore, timeout: float, hb: Heartbeat, limits: Limits | None = None) -> int:
    """Answer party 1's requests until it says stop; return the number of requests served."""
    t = GlooTransport(DEALER_RANK, timeout, hb, limits)
    served = 0
    while True:
        n = int(t.recv(1, 8).view(torch.int64)[0])
        if n == _STOP:
            return served
        payload = bytes(t.recv(1, n).numpy())
        t.send(1, core.answer(payload))
        served += 1
