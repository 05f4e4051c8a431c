"""Run a function in W real processes of one gloo group (data-parallel DP-SGD tests and benchmarks).

Users launch data-parallel training with ``torchrun`` (see ``examples/dp_ddp.py``); this launcher
exists so that tests and benchmarks can start W ranks from Python and collect what each returns.
"""

from __future__ import annotations

import datetime
import io
import multiprocessing as mp
import os
import queue
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist

from privlab.mpc.distributed import free_port


@dataclass(frozen=True)
class RankOutcome:
    """What one rank returned, or the error it raised (``error_type`` names the exception class)."""

    rank: int
    value: Any = None
    error_type: str | None = None
    error: str | None = None
    exit_code: int | None = None


def _child(fn: Callable[..., Any], rank: int, world: int, port: int, args: tuple[Any, ...],
           pg_timeout: float, out: Any) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=pg_timeout))
        buf = io.BytesIO()  # by value: a shared-memory tensor would die with this process
        torch.save(fn(rank, world, *args), buf)
        out.put(RankOutcome(rank, buf.getvalue()))
    except BaseException as exc:  # reported to the launcher, which re-raises or returns it
        out.put(RankOutcome(rank, error_type=type(exc).__name__, error=f"{exc}\n{traceback.format_exc()}"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_ranks(
    fn: Callable[..., Any], world_size: int, args: tuple[Any, ...] = (), *, timeout: float = 120.0,
    pg_timeout: float = 60.0,
) -> list[RankOutcome]:
    """Call ``fn(rank, world_size, *args)`` in ``world_size`` spawned processes of one gloo group.

    ``fn`` must be importable (a module-level function) and return something picklable. Returns
    each rank's outcome in rank order; a rank that exits without reporting (``os._exit``, a kill)
    gets its exit code. Processes still running after ``timeout`` seconds are killed and reported
    with ``error_type="Timeout"``: a hang is a failure, never a wait.
    """
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_child, args=(fn, r, world_size, port, args, pg_timeout, out), daemon=True)
             for r in range(world_size)]
    for p in procs:
        p.start()
    got: dict[int, RankOutcome] = {}
    limit = time.monotonic() + timeout
    while len(got) < world_size and time.monotonic() < limit:
        try:
            o = out.get(timeout=0.2)
            got[o.rank] = o
        except queue.Empty:
            if all(not p.is_alive() for p in procs):
                try:  # a last report may still be in the pipe
                    while True:
                        o = out.get(timeout=0.5)
                        got[o.rank] = o
                except queue.Empty:
                    break
    for p in procs:
        p.join(timeout=max(0.0, limit - time.monotonic()) + 5.0)
        if p.is_alive():
            p.kill()
            p.join()
    got = {r: replace(o, value=torch.load(io.BytesIO(o.value), weights_only=True)) if o.error is None else o
           for r, o in got.items()}
    return [
        got.get(r) or RankOutcome(r, error_type="Timeout" if procs[r].exitcode in (None, -9) else "Exited",
                                  error=f"rank {r} did not report", exit_code=procs[r].exitcode)
        for r in range(world_size)
    ]
