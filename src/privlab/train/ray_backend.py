"""Spread ensemble chunks over Ray workers (optional: ``pip install 'privlab[ray]'``).

Each chunk is one Ray task running the same vectorised (or one-by-one) trainer as the local path,
with the same seeds, so the result does not depend on the backend. ``ray_address=None`` starts or
joins a local Ray; pass a cluster address (``"ray://host:10001"`` or ``"auto"``) to use a cluster.
Ray is imported only here, only when the ``"ray"`` backend is requested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from privlab.errors import PrivlabError
from privlab.train.process_backend import ChunkJob, train_one_chunk


class RayUnavailableError(PrivlabError, ImportError):
    """The ``ray`` backend was requested but Ray is not installed."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            "The 'backend' parameter of train_ensemble is 'ray', but Ray is not installed. "
            "Install it with `pip install 'privlab[ray]'` (or `pip install ray`), or use backend='local'."
        ) from exc
    return ray


def _chunk_task(job: ChunkJob, start: int, stop: int) -> dict[str, torch.Tensor]:
    return train_one_chunk(job, start, stop)


def run_chunks_on_ray(
    job: ChunkJob,
    chunks: list[tuple[int, int]],
    finish: Callable[[tuple[int, int], dict[str, torch.Tensor]], None],
    ray_address: str | None = None,
) -> None:
    """Train ``chunks`` as Ray tasks; call ``finish(chunk, state)`` as each completes (so caching is per chunk)."""
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    task = ray.remote(num_cpus=1)(_chunk_task)
    job_ref = ray.put(job)
    pending = {task.remote(job_ref, s, e): (s, e) for s, e in chunks}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            finish(pending.pop(ref), ray.get(ref))
