"""The ``processes`` backend: the same models as the local backend, balanced chunks, errors and dead workers."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import torch

from privlab.data import membership_mask
from privlab.errors import InvalidParameterError
from privlab.models import MLP
from privlab.train import TrainConfig, train_ensemble, train_model
from privlab.train.process_backend import WorkerFailedError, balanced_chunks

CFG = TrainConfig(epochs=2, batch_size=8, lr=0.1, momentum=0.9, seed=1)


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_processes_match_local(tiny_data, tmp_path, chunk_size):
    hidden = (8,)
    mask = membership_mask(5, len(tiny_data), seed=2)
    local = train_ensemble(lambda: MLP(16, hidden, 4), tiny_data, mask, CFG, progress=False)
    # A closure as factory: forked workers inherit it, nothing is pickled.
    procs = train_ensemble(
        lambda: MLP(16, hidden, 4), tiny_data, mask, CFG, backend="processes", workers=2,
        chunk_size=chunk_size, cache_dir=tmp_path, progress=False,
    )
    assert procs.state.keys() == local.state.keys()
    for k in local.state:
        torch.testing.assert_close(procs.state[k], local.state[k], rtol=1e-5, atol=1e-6)
    # Negative control: another seed gives other models, so the comparison above can fail.
    other = train_ensemble(lambda: MLP(16, hidden, 4), tiny_data, mask,
                           TrainConfig(**{**CFG.to_dict(), "seed": 2}), backend="processes", workers=2, progress=False)
    assert not torch.allclose(*(next(v for k, v in s.state.items() if k.endswith("weight")) for s in (other, local)))
    # The chunks were cached as they finished: a second call trains nothing and gives the same state.
    again = train_ensemble(lambda: MLP(16, hidden, 4), tiny_data, mask, CFG, backend="processes", workers=2,
                           chunk_size=chunk_size, cache_dir=tmp_path, progress=False)
    for k in local.state:
        assert torch.equal(again.state[k], procs.state[k])


@pytest.mark.parametrize(("n", "size", "workers"), [(64, 20, 2), (5, 2, 2), (1, 4, 2), (7, 3, 3), (10, 100, 4)])
def test_balanced_chunks(n, size, workers):
    chunks = balanced_chunks(n, size, workers)
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    sizes = [e - s for s, e in chunks]
    assert max(sizes) <= size and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert len(chunks) % workers == 0 or len(chunks) == n
    assert balanced_chunks(64, 20, 2) == [(0, 16), (16, 32), (32, 48), (48, 64)]


def _dies(model, subset, cfg):
    os._exit(3)


def _raises(model, subset, cfg):
    raise ValueError("bad batch in a user's train_fn")


def test_dead_worker_ends_the_call_with_an_error(tiny_data):
    mask = membership_mask(4, len(tiny_data), seed=0)
    with pytest.raises(WorkerFailedError, match=r"died .* chunks \[\("):
        train_ensemble(lambda: MLP(16, (8,), 4), tiny_data, mask, CFG, backend="processes", workers=2,
                       chunk_size=1, train_fn=_dies, progress=False)


def test_error_in_a_chunk_is_raised_in_the_caller(tiny_data):
    mask = membership_mask(4, len(tiny_data), seed=0)
    with pytest.raises(ValueError, match="bad batch"):
        train_ensemble(lambda: MLP(16, (8,), 4), tiny_data, mask, CFG, backend="processes", workers=2,
                       chunk_size=1, train_fn=_raises, progress=False)


def test_train_fn_runs_in_workers(tiny_data):
    mask = membership_mask(3, len(tiny_data), seed=4)
    loop = train_ensemble(lambda: MLP(16, (8,), 4), tiny_data, mask, CFG, train_fn=train_model, progress=False)
    procs = train_ensemble(lambda: MLP(16, (8,), 4), tiny_data, mask, CFG, backend="processes", workers=2,
                           train_fn=train_model, progress=False)
    for k in loop.state:
        torch.testing.assert_close(procs.state[k], loop.state[k], rtol=1e-5, atol=1e-6)


def test_workers_validation(tiny_data):
    mask = np.ones((2, len(tiny_data)), dtype=bool)
    with pytest.raises(InvalidParameterError, match=r"'workers'.*backend='processes' only"):
        train_ensemble(lambda: MLP(16, (8,), 4), tiny_data, mask, CFG, workers=2, progress=False)
    with pytest.raises(InvalidParameterError, match="'workers'"):
        train_ensemble(lambda: MLP(16, (8,), 4), tiny_data, mask, CFG, backend="processes", workers=0, progress=False)


def test_private_models_without_the_mlp_kernel_train_one_by_one_in_workers(tiny_data):
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, seed=1, max_grad_norm=1.0, noise_multiplier=0.5)
    mask = membership_mask(3, len(tiny_data), seed=5)
    loop = train_ensemble(lambda: MLP(16, (8,), 4), tiny_data, mask, cfg, kernel="vmap", progress=False)
    procs = train_ensemble(lambda: MLP(16, (8,), 4), tiny_data, mask, cfg, backend="processes", workers=2,
                           kernel="vmap", progress=False)
    for k in loop.state:
        torch.testing.assert_close(procs.state[k], loop.state[k], rtol=1e-5, atol=1e-6)
