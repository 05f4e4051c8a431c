"""A party's view of a run: its rank, transport, dealer material, seeds and counters."""

from __future__ import annotations

import time
from typing import Any

import torch

from privlab.mpc.config import MPCConfig
from privlab.mpc.dealer.core import Provider
from privlab.mpc.prg import PRG, pack_bits, unpack_bits
from privlab.mpc.stats import CommCounter
from privlab.mpc.transport.base import Transport, pack, unpack


class Party:
    """Everything a protocol needs on one party; protocols are written SPMD (both run the same)."""

    def __init__(
        self,
        rank: int,
        transport: Transport,
        provider: Provider,
        pair_seed: int,
        config: MPCConfig,
        counter: CommCounter,
    ) -> None:
        self.rank = rank
        self.peer = 1 - rank
        self.transport = transport
        self.provider = provider
        self.pair_prg = PRG(pair_seed)  # shared by the two parties: zero shares, input sharing
        self.config = config
        self.counter = counter
        self.clock_start = time.perf_counter()
        self.range_checks = config.range_checks  # runtime domain checks (privlab.mpc.checks)
        self.pending: list[Any] = []  # checks recorded by protocols, run before the next reveal
        self.op_depth = 0  # nesting of protocol calls: only the outermost one records checks

    def mark_start(self) -> None:
        """Start the protocol clock here (after local set-up such as compiling the model)."""
        self.clock_start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the party was created or :meth:`mark_start` was called."""
        return time.perf_counter() - self.clock_start

    @property
    def f(self) -> int:
        """Fractional bits of the fixed-point encoding."""
        return self.config.frac_bits

    def material(self, kind: str, **params: Any) -> dict[str, torch.Tensor]:
        """This party's shares of dealer material of ``kind``."""
        return self.provider.get(kind, params)

    def exchange(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """One round: send ``tensors`` to the peer, receive the peer's tensors of the same shapes."""
        buf = pack(tensors)
        self.transport.send(self.peer, buf)
        got = self.transport.recv(self.peer, buf.numel())
        self.counter.add_round(buf.numel())
        return unpack(got, tensors)

    def exchange_uneven(self, send: list[torch.Tensor], receive_like: list[torch.Tensor]) -> list[torch.Tensor]:
        """One round in which the two sides send different tensors: send ``send``, receive tensors
        shaped (and typed) like ``receive_like``. Counted as one round of the bytes this party sends."""
        buf = pack(send)
        self.transport.send(self.peer, buf)
        got = self.transport.recv(self.peer, sum(t.numel() * t.element_size() for t in receive_like))
        self.counter.add_round(buf.numel())
        return unpack(got, receive_like)

    def open(self, shares: list[torch.Tensor]) -> list[torch.Tensor]:
        """Reveal arithmetic shares to both parties (one round, 8 bytes per element each way)."""
        theirs = self.exchange(shares)
        return [a + b for a, b in zip(shares, theirs, strict=True)]

    def open_bits(self, shares: list[torch.Tensor]) -> list[torch.Tensor]:
        """Reveal XOR shares of bits to both parties (one round, 1 bit per element each way)."""
        flat = torch.cat([s.reshape(-1) for s in shares])
        packed = pack_bits(flat)
        self.transport.send(self.peer, packed)
        got = unpack_bits(self.transport.recv(self.peer, packed.numel()), flat.shape)
        self.counter.add_round(packed.numel())
        full = flat ^ got
        out, pos = [], 0
        for s in shares:
            out.append(full[pos : pos + s.numel()].reshape(s.shape))
            pos += s.numel()
        return out

    def public(self, value: torch.Tensor) -> torch.Tensor:
        """Share of a public ring value: party 0 holds it, party 1 holds zero."""
        return value if self.rank == 0 else torch.zeros_like(value)

    def public_bits(self, value: torch.Tensor) -> torch.Tensor:
        """XOR share of public bits: party 0 holds them, party 1 holds zeros."""
        return value if self.rank == 0 else torch.zeros_like(value)
