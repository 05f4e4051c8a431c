"""Train K reference models, each on its own row of a (K, N) membership mask, cached and resumable.

Backends: ``"local"`` (vectorised chunks, :mod:`privlab.train.vmapped`), ``"loop"`` (the models
one after another with :func:`train_model` or a user's ``train_fn``; the reference the vectorised
path is tested against), ``"processes"`` (vectorised chunks in local worker processes of one torch
thread each, :mod:`privlab.train.process_backend`) and ``"ray"`` (chunks spread over Ray workers;
needs ``privlab[ray]``).
Model ``k`` always uses seed ``model_seed(cfg.seed, k)``, so the backend and the chunking change
only the speed, never the models.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from privlab._validation import check_choice, check_int
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.train.cache import EnsembleCache, digest, mask_to_json
from privlab.train.config import TrainConfig
from privlab.train.loop import TrainFn, one_by_one
from privlab.train.process_backend import ChunkJob, balanced_chunks, default_workers, run_chunks_in_processes
from privlab.train.ray_backend import run_chunks_on_ray
from privlab.train.sampling import init_model, model_seed
from privlab.train.vmapped import KERNELS, can_train_private, train_chunk

BACKENDS = ("local", "loop", "processes", "ray")
# Bumped whenever the trained parameters for a given key change (e.g. frozen parameters stopped
# being trained in version 2), so caches written by older code are not reused.
TRAINER_VERSION = 2
# Default local chunk: stacked parameters of at most ~4 MiB (20 MLP(784-64-10)s; measured best for MLPs).
# On an AMD EPYC (1 MiB L2 per core), 2 MiB chunks were faster at 1 thread and slower at 2 threads, the
# faster path (benchmarks/mia, path `ensemble_chunks_of_10`, results/mia_timing64_floor.json).
CHUNK_BYTES = 4 << 20


@dataclass(frozen=True, eq=False)
class EnsembleResult:
    """K trained models as one stacked state {name: (K, ...)}, with the mask and config that made them."""

    state: dict[str, torch.Tensor]
    mask: np.ndarray  # (K, N) bool: mask[k, n] = example n was in model k's training set
    config: TrainConfig
    model_factory: Callable[[], nn.Module]
    seeds: tuple[int, ...]

    @property
    def n_models(self) -> int:
        return int(self.mask.shape[0])

    def model(self, k: int) -> nn.Module:
        """Model ``k`` as an ordinary module (eval mode)."""
        check_int(k, "k", "EnsembleResult.model", low=0, high=self.n_models - 1)
        m = self.model_factory()
        m.load_state_dict({name: t[k] for name, t in self.state.items()})
        return m.eval()

    @property
    def models(self) -> list[nn.Module]:
        return [self.model(k) for k in range(self.n_models)]


def _check_mask(mask: Any, n: int) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.shape[1] != n or arr.dtype != bool or arr.shape[0] == 0:
        raise InvalidParameterError(
            f"The 'mask' parameter of train_ensemble must be a (K, {n}) bool array with K >= 1. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    empty = np.flatnonzero(arr.sum(axis=1) == 0)
    if len(empty):
        raise InvalidParameterError(
            f"The 'mask' parameter of train_ensemble must give every model at least one example. "
            f"Got empty rows {empty[:5].tolist()} instead."
        )
    return arr


def _ensemble_key(
    probe: nn.Module, data: ArrayDataset, mask: np.ndarray, cfg: TrainConfig, train_fn: TrainFn | None
) -> str:
    arch = ";".join(f"{k}:{tuple(v.shape)}" for k, v in probe.state_dict().items())
    data_hash = (
        hashlib.sha256(data.x.numpy().tobytes()).hexdigest() + hashlib.sha256(data.y.numpy().tobytes()).hexdigest()
    )
    fn_name = "" if train_fn is None else f"{train_fn.__module__}.{getattr(train_fn, '__qualname__', train_fn)}"
    return digest(
        cfg.hash(),
        np.packbits(mask).tobytes(),
        str(mask.shape),
        data_hash,
        type(probe).__qualname__,
        arch,
        fn_name,
        f"trainer-v{TRAINER_VERSION}",
    )


def train_ensemble(
    model_factory: Callable[[], nn.Module],
    dataset: ArrayDataset,
    mask: np.ndarray,
    cfg: TrainConfig,
    cache_dir: str | os.PathLike[str] | None = None,
    chunk_size: int | None = None,
    backend: str = "local",
    progress: bool = True,
    *,
    train_fn: TrainFn | None = None,
    ray_address: str | None = None,
    kernel: str = "auto",
    workers: int | None = None,
) -> EnsembleResult:
    """Train K = ``mask.shape[0]`` models; model k trains on ``dataset.subset(mask[k])`` with seed
    ``model_seed(cfg.seed, k)``.

    ``chunk_size`` models are trained (and cached) together; default: as many as keep the stacked
    parameters under ``CHUNK_BYTES`` (local; larger stacks fall out of the CPU caches and get slower
    per model) or 8 (ray). ``kernel`` picks the local gradient computation (see
    :func:`privlab.train.vmapped.train_chunk`). ``train_fn(model, subset, cfg)`` replaces the plain
    loop for a user's own training (implies one-by-one training). With ``cache_dir``, completed
    chunks are saved as they finish and reused on the next call with the same config, mask, data
    and architecture. With ``cfg.private`` (DP-SGD-style reference models), the local backend
    trains plain MLPs vectorised with the ``"mlp"`` kernel and other models (or any model with
    ``kernel="vmap"``) one by one (``"loop"``, or one by one in each worker with ``"processes"``).

    ``backend="processes"`` trains the chunks in ``workers`` local processes (default: the CPUs this
    process may use) of one torch thread each; without ``chunk_size``, the chunks are at most
    ``CHUNK_BYTES`` each and as equal as possible, their number a multiple of ``workers``.
    """
    check_choice(backend, "backend", "train_ensemble", BACKENDS)
    check_choice(kernel, "kernel", "train_ensemble", KERNELS)
    if workers is not None and backend != "processes":
        raise InvalidParameterError(
            f"The 'workers' parameter of train_ensemble applies to backend='processes' only. "
            f"Got workers={workers!r} with backend={backend!r}."
        )
    n_workers = check_int(default_workers() if workers is None else workers, "workers", "train_ensemble", low=1)
    mask = _check_mask(mask, len(dataset))
    K = mask.shape[0]
    probe = init_model(model_factory, 0)  # architecture questions are asked of one model
    private_loop = cfg.private and backend != "loop" and train_fn is None
    loop = backend == "loop" or train_fn is not None  # one by one (in worker processes with "processes")
    if private_loop and (
        (kernel == "vmap" and backend in ("local", "processes"))
        or not can_train_private(probe, dataset.x, dataset.y, mask)
    ):
        if backend == "ray":
            raise InvalidParameterError(
                "The 'backend' parameter of train_ensemble is 'ray', but DP-SGD-style training "
                "(cfg.max_grad_norm > 0) of this model needs one-by-one training. Use backend='loop'."
            )
        if backend != "processes":
            backend = "loop"  # DP-SGD-style training without the mlp kernel: one by one
        loop = True
    n_bytes = sum(p.numel() * p.element_size() for p in probe.parameters())
    if chunk_size is None and backend == "processes":
        chunks = balanced_chunks(K, max(1, CHUNK_BYTES // max(n_bytes, 1)), n_workers)
        size = chunks[0][1] - chunks[0][0]
    else:
        if chunk_size is None:
            chunk_size = 8 if backend == "ray" else max(1, min(K, CHUNK_BYTES // max(n_bytes, 1)))
        size = check_int(chunk_size, "chunk_size", "train_ensemble", low=1)
        chunks = [(s, min(s + size, K)) for s in range(0, K, size)]
    seeds = tuple(model_seed(cfg.seed, k) for k in range(K))
    cache = None
    if cache_dir is not None:
        key = _ensemble_key(probe, dataset, mask, cfg, train_fn)
        cache = EnsembleCache(
            cache_dir,
            key,
            {"config": cfg.to_dict(), "config_hash": cfg.hash(), "mask": mask_to_json(mask), "chunk_size": size},
        )
    done: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    todo = []
    for c in chunks:
        loaded = cache.load(*c) if cache is not None else None
        if loaded is not None:
            done[c] = loaded
        else:
            todo.append(c)

    def finish(c: tuple[int, int], state: dict[str, torch.Tensor]) -> None:
        done[c] = state
        if cache is not None:
            cache.save(*c, state, {"config_hash": cfg.hash(), "seeds": list(seeds[c[0] : c[1]])})

    job = ChunkJob(model_factory, dataset.x, dataset.y, mask, seeds, cfg, train_fn, kernel, loop)
    if backend == "ray" and todo:
        run_chunks_on_ray(job, todo, finish, ray_address)
    elif backend == "processes" and todo:
        run_chunks_in_processes(job, todo, finish, n_workers, progress)
    else:
        bar = tqdm(todo, disable=not progress or len(todo) < 2, desc="chunks")
        for start, stop in bar:
            rows, sd = mask[start:stop], seeds[start:stop]
            if loop:
                state = one_by_one(model_factory, dataset, rows, sd, cfg, train_fn)
            else:
                state = train_chunk(
                    model_factory,
                    dataset.x,
                    dataset.y,
                    rows,
                    sd,
                    cfg,
                    progress=progress,
                    desc=f"models {start}-{stop - 1}",
                    kernel=kernel,
                )
            finish((start, stop), state)
    names = list(done[chunks[0]])
    state = {n: torch.cat([done[c][n] for c in chunks]) for n in names}
    return EnsembleResult(state=state, mask=mask, config=cfg, model_factory=model_factory, seeds=seeds)
