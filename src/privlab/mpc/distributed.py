"""Real processes: one party (or the dealer) per process, talking over gloo; on one host or many.

``run_party`` is what one host runs (rank 0 = model owner, 1 = data owner, 2 = dealer), with the
rendezvous address, port and rank from arguments or ``MASTER_ADDR``/``MASTER_PORT``/``RANK``.
``run_processes`` starts all three on this host (spawn start method) and gathers the results.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from privlab._validation import check_int
from privlab.errors import MPCError
from privlab.mpc.config import MPCConfig
from privlab.mpc.dealer.core import DealerCore, Provider
from privlab.mpc.dealer.remote import GlooDealerLink, serve_dealer
from privlab.mpc.handshake import handshake, statement, task_fields
from privlab.mpc.launch import RunResult
from privlab.mpc.party import Party
from privlab.mpc.stats import CommCounter, CommStats
from privlab.mpc.transport.gloo import DEALER_RANK, GlooTransport, Heartbeat
from privlab.mpc.transport.limits import Limits

WORLD_SIZE = 3


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _watchdog(hb: Heartbeat, limit: float, rank: int) -> None:
    """Kill this process if no message completes for ``limit`` s while one is awaited (no hang)."""
    while True:
        time.sleep(min(1.0, limit / 4))
        if hb.busy and time.monotonic() - hb.last > limit:
            print(f"privlab.mpc watchdog: rank {rank} made no progress for {limit} s; exiting", flush=True)
            os._exit(3)


def _seed_exchange(rank: int, timeout: float, hb: Heartbeat) -> tuple[int, int]:
    """The dealer sends each party its seed; party 0 sends party 1 the pair seed."""
    t = GlooTransport(rank, timeout, hb)

    def send_int(dst: int, v: int) -> None:
        t.send(dst, torch.tensor([v], dtype=torch.int64).view(torch.uint8))

    def recv_int(src: int) -> int:
        return int(t.recv(src, 8).view(torch.int64)[0])

    if rank == DEALER_RANK:
        s0, s1 = secrets.randbits(63), secrets.randbits(63)
        send_int(0, s0)
        send_int(1, s1)
        t.close()
        return s0, s1
    dealer_seed = recv_int(DEALER_RANK)
    if rank == 0:
        pair = secrets.randbits(63)
        send_int(1, pair)
        t.close()
    else:
        pair = recv_int(0)
    return dealer_seed, pair


def run_party(
    rank: int | None,
    fn: Callable[..., Any] | None,
    args: tuple[Any, ...] = (),
    config: MPCConfig | None = None,
    addr: str | None = None,
    port: int | None = None,
    public: dict[str, Any] | None = None,
) -> tuple[Any, CommStats, float] | None:
    """Run one role of a gloo run in this process; the dealer (rank 2) returns ``None``.

    A party returns its output, its traffic and the seconds ``fn`` took after the rendezvous
    (or after ``fn`` called ``party.mark_start()`` once its local set-up was done).

    Missing ``rank``/``addr``/``port`` come from ``RANK``/``MASTER_ADDR``/``MASTER_PORT``;
    ``WORLD_SIZE``, if set, must be 3.

    The run opens with :func:`~privlab.mpc.handshake.handshake`: the ranks compare their privlab
    version, the message-shaping ``config`` fields, the task's name, the task's public arguments
    (:func:`~privlab.mpc.handshake.agrees_on`) and the caller's ``public`` facts (JSON values,
    e.g. the model and input shape), and all stop at once with an
    ``MPCError`` naming the fields on which they differ.
    """
    config = config or MPCConfig()
    rank = check_int(int(os.environ["RANK"]) if rank is None else rank, "rank", "run_party", low=0, high=2)
    if "WORLD_SIZE" in os.environ:  # two parties and the dealer, nothing else
        check_int(int(os.environ["WORLD_SIZE"]), "WORLD_SIZE", "run_party", low=WORLD_SIZE, high=WORLD_SIZE)
    addr = addr or os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = port or int(os.environ.get("MASTER_PORT", "29500"))
    torch.set_num_threads(1)
    hb = Heartbeat()
    threading.Thread(target=_watchdog, args=(hb, config.timeout + 10.0, rank), daemon=True).start()
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{addr}:{port}",
            rank=rank,
            world_size=WORLD_SIZE,
            timeout=timedelta(seconds=config.timeout),
        )
    except Exception as exc:
        raise MPCError(f"rank {rank} could not join the rendezvous at {addr}:{port}: {exc}") from exc
    try:
        task = None if fn is None else f"{fn.__module__}:{fn.__qualname__}"
        peers = [r for r in range(WORLD_SIZE) if r != rank]
        public = {**(public or {}), **task_fields(fn, args)}
        handshake(rank, peers, statement(config, task, public), Limits(config.timeout), hb)
        seed, pair = _seed_exchange(rank, config.timeout, hb)
        limits = Limits.start(config.timeout, config.deadline)  # the run's deadline starts here
        if rank == DEALER_RANK:
            serve_dealer(DealerCore(seed, pair), config.timeout, hb, limits)
            return None
        counter = CommCounter()
        transport = GlooTransport(rank, config.timeout, hb, limits)
        link = GlooDealerLink(transport) if rank == 1 else None
        party = Party(rank, transport, Provider(rank, seed, link, counter), pair, config, counter)
        if fn is None:
            raise MPCError("a party needs a function to run")
        party.mark_start()
        out = fn(party, *args)
        seconds = party.elapsed()
        if link is not None:
            link.stop()
        transport.close()
        return out, counter.snapshot(), seconds
    finally:
        dist.destroy_process_group()


def _child(
    rank: int,
    fn: Callable[..., Any] | None,
    args: tuple[Any, ...],
    config: MPCConfig,
    port: int,
    results: Any,
    started: Any = None,
) -> None:
    if started is not None:  # reached only once the spawn bootstrap (re-importing __main__) succeeded
        started[rank if rank < 2 else 2] = 1
    try:
        res = run_party(rank, fn, args, config, "127.0.0.1", port)
        # by value: a shared-memory tensor would die with this process before the parent reads it
        results.put((rank, "ok", pickle.dumps(res)))
    except BaseException as exc:  # reported to the launcher, which raises MPCError
        results.put((rank, "error", f"{type(exc).__name__}: {exc}"))


@contextlib.contextmanager
def _main_not_reimported(skip: bool) -> Iterator[None]:
    """Spawned children re-import ``__main__`` (slow for a CLI that imports every pillar); skip it
    when nothing they run lives there."""
    main = sys.modules["__main__"]
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    if skip:
        main.__spec__ = None
        if hasattr(main, "__file__"):
            delattr(main, "__file__")
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


SPAWN_HINT = (
    "multiprocessing's spawn start method re-imports your main script in every party process, so a script "
    'that starts an MPC run at module level must guard it with `if __name__ == "__main__":` (see the '
    "party's traceback above for the import that failed)"
)


STOP_GRACE = 10.0  # seconds past MPCConfig.timeout that a rank has to stop after another failed


def _exit_message(exitcode: int | None, started: bool) -> str:
    """What a party process that died without reporting tells the user."""
    if started:
        return f"process exited with {exitcode}"
    return f"process exited with {exitcode} while starting, before running any privlab code"


def run_processes(
    fn: Callable[..., Any],
    args: tuple[tuple[Any, ...], tuple[Any, ...]],
    config: MPCConfig | None = None,
    port: int | None = None,
    slack: float = 30.0,
    on_started: Callable[[list[Any]], None] | None = None,
    reimport_main: bool = True,
) -> RunResult:
    """Start party 0, party 1 and the dealer as separate processes on 127.0.0.1 and wait.

    ``seconds`` of the result is the parties' time after the rendezvous (not process start-up).

    ``fn`` must be importable (a module-level function). ``on_started`` receives the three
    ``Process`` objects (rank order) once started (fault-injection tests kill one);
    ``reimport_main=False`` spares the children re-importing ``__main__``.

    Two limits, as in :class:`MPCConfig`: each process ends itself when one message takes longer
    than ``config.timeout`` (a dead peer), so the launcher only watches exit codes; a whole-run
    ``config.deadline`` (if set) is enforced by the parties, and by the launcher, which kills
    processes still running ``deadline + slack`` seconds after start (``slack``: start-up). Raises
    ``MPCError`` with every failing rank's message; the message says when the deadline fired.
    """
    config = config or MPCConfig()
    port = port or free_port()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    started = ctx.Array("b", 3)
    procs = []
    with _main_not_reimported(not reimport_main):
        for rank in (0, 1, DEALER_RANK):
            a = args[rank] if rank < 2 else ()
            child_args = (rank, fn if rank < 2 else None, a, config, port, results, started)
            p = ctx.Process(target=_child, args=child_args, daemon=True)
            p.start()
            procs.append(p)
    if on_started is not None:
        on_started(procs)
    got: dict[int, tuple[str, Any]] = {}
    limit = None if config.deadline is None else time.monotonic() + config.deadline + slack
    grace: float | None = None  # once a rank failed, the others have one message timeout to stop too
    while len(got) < 3 and (limit is None or time.monotonic() < limit) and (grace is None or time.monotonic() < grace):
        try:
            rank, status, res = results.get(timeout=0.5)
            got[rank] = (status, pickle.loads(res) if status == "ok" else res)
        except Exception:
            exited = [i for i, p in enumerate(procs) if p.exitcode is not None and i not in got]
            for i in exited:
                if procs[i].exitcode != 0:
                    got[i] = ("error", _exit_message(procs[i].exitcode, bool(started[i])))
            if all(p.exitcode is not None for p in procs) and results.empty():
                break  # everyone is gone: nothing more will arrive
        if grace is None and any(st == "error" for st, _ in got.values()):
            grace = time.monotonic() + config.timeout + STOP_GRACE
    for p in procs:
        p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
    errors = {r: m for r, (s, m) in got.items() if s == "error"}
    if errors or len(got) < 3:
        missing = sorted({0, 1, DEALER_RANK} - set(got))
        msg = "; ".join(f"rank {r}: {m}" for r, m in sorted(errors.items()))
        deadline_hit = "MPCConfig.deadline" in msg or (missing and limit is not None and time.monotonic() >= limit)
        if missing:
            if deadline_hit:
                why = f"still running at the run deadline ({config.deadline} s + {slack} s start-up) and stopped"
            elif grace is not None and time.monotonic() >= grace:
                why = (f"still running {config.timeout:g} s (MPCConfig.timeout) + {STOP_GRACE:g} s after the failure "
                       "above, stuck outside a message wait, and stopped")
            else:
                why = "exited without a result"
            msg += ("; " if msg else "") + f"ranks {missing}: {why}"
        head = (
            f"MPC run stopped by its deadline of {config.deadline} s (MPCConfig.deadline, the whole-run "
            "limit; not a dead party)"
            if deadline_hit
            else "MPC run failed"
        )
        if any(str(m).endswith("before running any privlab code") for m in errors.values()):
            msg += f". {SPAWN_HINT[0].upper()}{SPAWN_HINT[1:]}"
        raise MPCError(f"{head}: {msg}")
    outs = (got[0][1][0], got[1][1][0])
    stats = CommStats.combine([got[0][1][1], got[1][1][1]])
    return RunResult(outs, stats, max(got[0][1][2], got[1][1][2]))
