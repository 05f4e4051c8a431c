"""Communication accounting: rounds and bytes per operation and in total."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar


@dataclass(frozen=True)
class OpStats:
    """Traffic of one named operation (summed over its calls)."""

    rounds: int
    bytes: int
    dealer_bytes: int


@dataclass(frozen=True)
class CommStats:
    """Traffic of a run: ``bytes`` sent between the parties (both directions, summed over
    parties), ``rounds`` of party-to-party communication, ``dealer_bytes`` exchanged with the
    dealer (requests and correlated randomness), ``dealer_requests`` their number, ``per_op`` the
    same split by the outermost operation that caused them."""

    rounds: int
    bytes: int
    dealer_bytes: int
    dealer_requests: int
    per_op: dict[str, OpStats] = field(default_factory=dict)

    @staticmethod
    def combine(parts: list[CommStats]) -> CommStats:
        """Merge the views of the parties: rounds are shared (max), bytes add up."""
        per: dict[str, OpStats] = {}
        for p in parts:
            for name, o in p.per_op.items():
                q = per.get(name, OpStats(0, 0, 0))
                per[name] = OpStats(max(q.rounds, o.rounds), q.bytes + o.bytes, q.dealer_bytes + o.dealer_bytes)
        return CommStats(
            rounds=max((p.rounds for p in parts), default=0),
            bytes=sum(p.bytes for p in parts),
            dealer_bytes=sum(p.dealer_bytes for p in parts),
            dealer_requests=sum(p.dealer_requests for p in parts),
            per_op=per,
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "rounds": self.rounds,
            "bytes": self.bytes,
            "dealer_bytes": self.dealer_bytes,
            "dealer_requests": self.dealer_requests,
            "per_op": {k: vars(v) for k, v in self.per_op.items()},
        }


class CommCounter:
    """Mutable per-party counter; ``scope`` names the operation that traffic is charged to."""

    def __init__(self) -> None:
        self.rounds = 0
        self.bytes = 0
        self.dealer_bytes = 0
        self.dealer_requests = 0
        self._per: dict[str, list[int]] = {}
        self._stack: list[str] = []

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Charge traffic inside the block to ``name`` (the outermost scope wins)."""
        self._stack.append(name)
        try:
            yield
        finally:
            self._stack.pop()

    def _slot(self) -> list[int]:
        name = self._stack[0] if self._stack else "other"
        return self._per.setdefault(name, [0, 0, 0])

    def add_round(self, nbytes: int) -> None:
        """Record one communication round in which this party sent ``nbytes``."""
        self.rounds += 1
        self.bytes += nbytes
        s = self._slot()
        s[0] += 1
        s[1] += nbytes

    def add_dealer(self, nbytes: int) -> None:
        """Record one exchange with the dealer moving ``nbytes`` (both directions)."""
        self.dealer_requests += 1
        self.dealer_bytes += nbytes
        self._slot()[2] += nbytes

    def snapshot(self) -> CommStats:
        """The counts so far as an immutable :class:`CommStats`."""
        per = {k: OpStats(v[0], v[1], v[2]) for k, v in self._per.items()}
        return CommStats(self.rounds, self.bytes, self.dealer_bytes, self.dealer_requests, per)


P = ParamSpec("P")
R = TypeVar("R")


def counted(fn: Callable[P, R]) -> Callable[P, R]:
    """Charge a protocol's traffic to its name (``party`` is the first argument) unless an outer
    operation (a model layer, another protocol) already claimed it."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        party = args[0]
        with party.counter.scope(fn.__name__):  # type: ignore[attr-defined]
            depth = getattr(party, "op_depth", None)  # only the outermost protocol records range checks
            if depth is None:
                return fn(*args, **kwargs)
            party.op_depth = depth + 1  # type: ignore[attr-defined]
            try:
                return fn(*args, **kwargs)
            finally:
                party.op_depth = depth  # type: ignore[attr-defined]

    return wrapper
