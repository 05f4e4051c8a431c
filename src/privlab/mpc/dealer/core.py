"""The dealer's arithmetic and the parties' side of it (who draws what from which seed)."""

from __future__ import annotations

import json
from typing import Any, Protocol

import torch

from privlab.mpc.dealer.material import Field, Spec, make_spec
from privlab.mpc.prg import PRG, pack_bits, pack_high, unpack_bits, unpack_high
from privlab.mpc.stats import CommCounter


def _draw_one(f: Field, prg: PRG) -> torch.Tensor:
    """A uniform share of ``f``'s group: bits, Z/2^64, or the multiples of ``2^(64 - f.bits)``."""
    if f.binary:
        return prg.bits(f.shape)
    v = prg.ring(f.shape)
    return v if f.bits == 64 else torch.bitwise_left_shift(v, 64 - f.bits)


def _draw(fields: list[Field], prg: PRG, rank: int = 0) -> dict[str, torch.Tensor]:
    return {f.name: _draw_one(f, prg) for f in fields if rank == 0 or not f.owner0}


def _encode(fields: list[Field], values: dict[str, torch.Tensor]) -> torch.Tensor:
    parts = []
    for f in fields:
        v = values[f.name]
        if f.binary:
            parts.append(pack_bits(v))
        elif f.bits < 64:
            parts.append(pack_high(v, f.bits))
        else:
            parts.append(v.contiguous().reshape(-1).view(torch.uint8))
    return torch.cat(parts) if parts else torch.empty(0, dtype=torch.uint8)


def _decode(fields: list[Field], buf: torch.Tensor) -> dict[str, torch.Tensor]:
    out, pos = {}, 0
    for f in fields:
        n = f.nbytes()
        chunk = buf[pos : pos + n].clone()
        if f.binary:
            out[f.name] = unpack_bits(chunk, f.shape)
        elif f.bits < 64:
            out[f.name] = unpack_high(chunk, f.shape, f.bits)
        else:
            out[f.name] = chunk.view(torch.int64).reshape(f.shape)
        pos += n
    return out


def encode_request(kind: str, params: dict[str, Any]) -> bytes:
    """A request as it travels from party 1 to the dealer."""
    return json.dumps({"k": kind, "p": params}, separators=(",", ":")).encode()


class DealerCore:
    """Holds both seeds; answers party 1's requests with the corrections of derived fields."""

    def __init__(self, seed0: int, seed1: int) -> None:
        self._g0 = PRG(seed0)
        self._g1 = PRG(seed1)

    def answer(self, request: bytes) -> torch.Tensor:
        """Corrections (party 1's shares of derived fields) for one request, as bytes."""
        msg = json.loads(request)
        spec = make_spec(msg["k"], msg["p"])
        r0 = _draw(spec.random, self._g0)
        d0 = _draw(spec.derived, self._g0)
        r1 = _draw(spec.random, self._g1, rank=1)
        full = {
            f.name: r0[f.name] if f.owner0 else (r0[f.name] ^ r1[f.name]) if f.binary else r0[f.name] + r1[f.name]
            for f in spec.random
        }
        val = spec.derive(full)
        corr = {f.name: (val[f.name] ^ d0[f.name]) if f.binary else val[f.name] - d0[f.name] for f in spec.derived}
        return _encode(spec.derived, corr)


class DealerLink(Protocol):
    """Party 1's channel to the dealer: a request is posted, then its reply awaited, so the
    dealer's work overlaps with party 1 drawing its own shares."""

    def post(self, payload: bytes) -> None:
        """Send a request."""

    def reply(self, reply_bytes: int) -> torch.Tensor:
        """The reply (``reply_bytes`` bytes) to the oldest posted request; ``MPCError`` on timeout."""


class Provider:
    """A party's source of correlated randomness: seed-derived shares plus (party 1) corrections."""

    def __init__(self, rank: int, seed: int, link: DealerLink | None, counter: CommCounter) -> None:
        self.rank = rank
        self._prg = PRG(seed)
        self._link = link
        self._counter = counter

    def get(self, kind: str, params: dict[str, Any]) -> dict[str, torch.Tensor]:
        """This party's shares of one piece of material (same call order on both parties)."""
        spec: Spec = make_spec(kind, params)
        if self.rank == 0:
            out = _draw(spec.random, self._prg, self.rank)
            out.update(_draw(spec.derived, self._prg))
            return out
        if self._link is None:
            raise RuntimeError("party 1 needs a dealer link")
        payload = encode_request(kind, params)
        self._link.post(payload)
        out = _draw(spec.random, self._prg, self.rank)
        size = sum(f.nbytes() for f in spec.derived)
        reply = self._link.reply(size)
        self._counter.add_dealer(len(payload) + 8 + size)
        out.update(_decode(spec.derived, reply))
        return out


class LocalLink:
    """In-process dealer: party 1 calls the dealer object directly (tests)."""

    def __init__(self, core: DealerCore) -> None:
        self._core = core
        self._pending: list[bytes] = []

    def post(self, payload: bytes) -> None:
        self._pending.append(payload)

    def reply(self, reply_bytes: int) -> torch.Tensor:
        return self._core.answer(self._pending.pop(0))
