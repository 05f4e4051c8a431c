"""Spread ensemble chunks over Ray workers (optional: ``pip install 'privlab[ray]'``).

Each chunk is one Ray task running the same vectorised (or one-by-one) trainer as the local path,
with the same seeds, so the result does not depend on the backend. ``ray_address=None`` starts or
joins a local Ray; pass a cluster address (``"ray://host:10001"`` or ``"auto"``) to use a cluster.
Ray is imported only here, only when the ``"ray"`` backend is requested.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from privlab.data import ArrayDataset
from privlab.errors import PrivlabError
from privlab.train.config import TrainConfig
from privlab.train.loop import one_by_one
from privlab.train.vmapped import train_chunk


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


def _chunk_task(
    factory: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    rows: np.ndarray,
    seeds: Sequence[int],
    cfg: TrainConfig,
    train_fn: Any,
) -> dict[str, torch.Tensor]:
    torch.set_num_threads(1)
    if train_fn is not None:
        return one_by_one(factory, ArrayDataset(x, y), rows, seeds, cfg, train_fn)
    return train_chunk(factory, x, y, rows, seeds, cfg)


def run_chunks_on_ray(
    model_factory: Callable[[], nn.Module],
    dataset: ArrayDataset,
    mask: np.ndarray,
    seeds: Sequence[int],
    cfg: TrainConfig,
    chunks: list[tuple[int, int]],
    finish: Callable[[tuple[int, int], dict[str, torch.Tensor]], None],
    train_fn: Any = None,
    ray_address: str | None = None,
    progress: bool = False,
) -> None:
    """Train ``chunks`` as Ray tasks; call ``finish(chunk, state)`` as each completes (so caching is per chunk)."""
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    task = ray.remote(num_cpus=1)(_chunk_task)
    x_ref, y_ref = ray.put(dataset.x), ray.put(dataset.y)
    pending = {
        task.remote(model_factory, x_ref, y_ref, mask[s:e], list(seeds[s:e]), cfg, train_fn): (s, e) for s, e in chunks
    }
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            finish(pending.pop(ref), ray.get(ref))
