"""Running the two parties (and the dealer): threads in one process, or real processes over gloo."""

from __future__ import annotations

import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from privlab.errors import MPCError
from privlab.mpc.config import MPCConfig
from privlab.mpc.dealer.core import DealerCore, LocalLink, Provider
from privlab.mpc.party import Party
from privlab.mpc.stats import CommCounter, CommStats
from privlab.mpc.transport.local import PeerFailedError, local_pair

PartyFn = Callable[..., Any]


@dataclass(frozen=True)
class RunResult:
    """Outputs of both parties (index = rank), combined traffic, and wall time in seconds."""

    outputs: tuple[Any, Any]
    stats: CommStats
    seconds: float


@dataclass(frozen=True)
class Seeds:
    """Seeds the dealer shares with party 0 and party 1, and the one the two parties share."""

    dealer0: int
    dealer1: int
    pair: int

    @staticmethod
    def fresh() -> Seeds:
        return Seeds(secrets.randbits(63), secrets.randbits(63), secrets.randbits(63))


def run_local(
    fn: PartyFn,
    args: tuple[tuple[Any, ...], tuple[Any, ...]],
    config: MPCConfig | None = None,
    seeds: Seeds | None = None,
    slack: float = 5.0,
) -> RunResult:
    """Run ``fn(party, *args[rank])`` for ranks 0 and 1 in two threads with an in-process dealer.

    ``seconds`` of the result is the slower party's time since start (or ``mark_start``).

    The failing party's own error is re-raised, not its peer's notice that it failed (the peer of
    a failed party stops at its next wait; a silent peer gives ``MPCError`` after
    ``config.timeout``, a run past ``config.deadline`` one that names the deadline). A party still
    running ``config.timeout + slack`` seconds after its peer failed is stuck in its own work (a
    transport wait would have ended): the run raises an ``MPCError`` naming it, chained to the
    peer's error, and leaves its thread behind (a daemon: threads cannot be stopped).
    """
    config = config or MPCConfig()
    seeds = seeds or Seeds.fresh()
    core = DealerCore(seeds.dealer0, seeds.dealer1)
    t0, t1 = local_pair(config.timeout, config.deadline)
    counters = (CommCounter(), CommCounter())
    parties = (
        Party(0, t0, Provider(0, seeds.dealer0, None, counters[0]), seeds.pair, config, counters[0]),
        Party(1, t1, Provider(1, seeds.dealer1, LocalLink(core), counters[1]), seeds.pair, config, counters[1]),
    )
    outputs: list[Any] = [None, None]
    errors: list[BaseException | None] = [None, None]
    ended: queue.Queue[int] = queue.Queue()

    def work(rank: int) -> None:
        try:
            outputs[rank] = fn(parties[rank], *args[rank])
        except BaseException as exc:  # re-raised in the caller's thread below
            errors[rank] = exc
            (t0, t1)[rank].fail()  # the peer learns it at its next wait, not after a timeout
        finally:
            ended.put(rank)

    threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in (0, 1)]
    for t in threads:
        t.start()
    first = ended.get()
    other = 1 - first
    if errors[first] is None:
        threads[other].join()  # its waits end by the timeout: the finished party sends nothing more
    else:
        limit = config.timeout + slack
        threads[other].join(timeout=limit)
        if threads[other].is_alive():
            raise MPCError(
                f"party {other} did not stop within {limit:.1f} s (MPCConfig.timeout + slack) after "
                f"party {first} failed: it is stuck in its own work, not waiting for a message (its "
                f"thread is left running). Party {first}'s error: {errors[first]}"
            ) from errors[first]
    seconds = max(p.elapsed() for p in parties)
    _raise_first(errors)
    stats = CommStats.combine([c.snapshot() for c in counters])
    return RunResult((outputs[0], outputs[1]), stats, seconds)


def _raise_first(errors: list[BaseException | None]) -> None:
    """Raise the most telling error of the two parties: a non-MPC error (a bug) first, then a
    party's own ``MPCError``, and a peer's failure notice only if nothing else is there."""
    failed = [e for e in errors if e is not None]
    for exc in sorted(failed, key=lambda e: (isinstance(e, MPCError), isinstance(e, PeerFailedError))):
        raise exc
