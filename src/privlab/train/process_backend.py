"""Spread ensemble chunks over local worker processes, one torch thread each (``backend="processes"``).

The stacked-MLP kernel's products are small (rows of 32 examples), and one process with two torch
threads spends part of each step waiting at OpenMP barriers and in single-threaded element-wise
operators; two processes of one thread each keep both cores busy on independent chunks instead
(``benchmarks/mia``). Each chunk is trained by the same code as the local backend, with the same
seeds, so the models do not depend on the backend.

Workers are forked where the platform allows it (Linux): the model factory, data and mask reach them
by inheritance, so a factory need not be picklable, and start-up costs milliseconds. Elsewhere they
are spawned, and the factory must be picklable (a module-level function or class). A chunk that
raises re-raises in the caller; a worker that dies (killed, out of memory) ends the call with
:class:`WorkerFailedError` naming the chunks it left unfinished. Chunks finished before that are
passed to ``finish`` (and so cached) as they complete.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from privlab.data import ArrayDataset
from privlab.errors import PrivlabError
from privlab.train.config import TrainConfig
from privlab.train.loop import one_by_one
from privlab.train.vmapped import train_chunk

Chunk = tuple[int, int]


class WorkerFailedError(PrivlabError, RuntimeError):
    """A worker process of the ``processes`` backend died before returning its chunk."""


@dataclass(frozen=True)
class ChunkJob:
    """Everything a worker needs to train any chunk of one ensemble."""

    model_factory: Callable[[], nn.Module]
    x: torch.Tensor
    y: torch.Tensor
    mask: np.ndarray
    seeds: tuple[int, ...]
    cfg: TrainConfig
    train_fn: Any = None
    kernel: str = "auto"
    loop: bool = False  # one by one (train_fn, or train_model when it is None) instead of train_chunk


def train_one_chunk(job: ChunkJob, start: int, stop: int) -> dict[str, torch.Tensor]:
    """Models ``start .. stop - 1`` of ``job`` on one torch thread (the worker side of every backend)."""
    torch.set_num_threads(1)
    rows, seeds = job.mask[start:stop], list(job.seeds[start:stop])
    if job.loop or job.train_fn is not None:
        return one_by_one(job.model_factory, ArrayDataset(job.x, job.y), rows, seeds, job.cfg, job.train_fn)
    return train_chunk(job.model_factory, job.x, job.y, rows, seeds, job.cfg, kernel=job.kernel)


_INHERITED: ChunkJob | None = None  # set in the parent before forking; read by forked workers


def _init_worker(job: ChunkJob | None) -> None:
    global _INHERITED
    if job is not None:  # spawned: the job came pickled
        _INHERITED = job
    torch.set_num_threads(1)


def _run(start: int, stop: int) -> dict[str, torch.Tensor]:
    assert _INHERITED is not None, "worker started without a job"
    return train_one_chunk(_INHERITED, start, stop)


def balanced_chunks(n_models: int, max_size: int, workers: int) -> list[Chunk]:
    """Chunks of at most ``max_size`` models whose sizes differ by at most one, their number the least
    multiple of ``workers`` that allows it (or ``n_models``, if smaller). 64 models, at most 20 per
    chunk, 2 workers: four chunks of 16, not 20, 20, 20, 4, which would leave one worker idle for a
    third of the run."""
    n = -(-n_models // max_size)
    n = min(n_models, -(-n // workers) * workers)
    bounds = [i * n_models // n for i in range(n + 1)]
    return list(itertools.pairwise(bounds))


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_chunks_in_processes(
    job: ChunkJob,
    chunks: Sequence[Chunk],
    finish: Callable[[Chunk, dict[str, torch.Tensor]], None],
    workers: int,
    progress: bool = False,
) -> None:
    """Train ``chunks`` in ``workers`` processes; call ``finish(chunk, state)`` in this process as each completes."""
    global _INHERITED
    fork = "fork" in mp.get_all_start_methods()
    ctx = mp.get_context("fork" if fork else "spawn")
    workers = max(1, min(workers, len(chunks)))
    _INHERITED = job if fork else None
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(None if fork else job,)) as pool:
            pending: dict[Future[dict[str, torch.Tensor]], Chunk] = {pool.submit(_run, *c): c for c in chunks}
            try:
                _collect(pending, finish, progress, len(chunks))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # do not train the rest after an error
                raise
    finally:
        _INHERITED = None


def _collect(
    pending: dict[Future[dict[str, torch.Tensor]], Chunk],
    finish: Callable[[Chunk, dict[str, torch.Tensor]], None],
    progress: bool,
    total: int,
) -> None:
    with tqdm(total=total, disable=not progress or total < 2, desc="chunks") as bar:
        while pending:
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ready:
                chunk = pending.pop(fut)
                try:
                    state = fut.result()
                except BrokenProcessPool as exc:
                    left = sorted([chunk, *pending.values()])
                    raise WorkerFailedError(
                        f"A worker process of train_ensemble's 'processes' backend died (killed, or out of "
                        f"memory) before returning its chunk; models of chunks {left} are not trained. "
                        "Chunks finished before are cached when cache_dir is set; call again to resume."
                    ) from exc
                finish(chunk, state)
                bar.update()
