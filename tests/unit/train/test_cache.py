"""On-disk ensemble cache: reuse, resume after a kill, refusal of corrupt files; the Ray backend."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

import privlab.train.ensemble as ens_mod
from privlab.data import membership_mask
from privlab.errors import CorruptArtifactError
from privlab.models import MLP
from privlab.train import TrainConfig, train_ensemble
from privlab.train.cache import mask_from_json, mask_to_json

CFG = TrainConfig(epochs=2, batch_size=8, lr=0.1, seed=1)


def factory() -> MLP:
    return MLP(in_features=16, hidden=(8,), num_classes=4)


def test_mask_json_roundtrip():
    m = membership_mask(3, 11, seed=0)
    assert np.array_equal(mask_from_json(json.loads(json.dumps(mask_to_json(m)))), m)


def test_cache_reuses_and_resumes(tiny_data, tmp_path, monkeypatch):
    mask = membership_mask(4, len(tiny_data), seed=0)
    first = train_ensemble(factory, tiny_data, mask, CFG, cache_dir=tmp_path, chunk_size=2, progress=False)
    (folder,) = tmp_path.iterdir()
    meta = json.loads((folder / "ensemble.json").read_text())
    assert meta["config_hash"] == CFG.hash() and np.array_equal(mask_from_json(meta["mask"]), mask)
    assert len(list(folder.glob("chunk-*.safetensors"))) == 2

    # Simulate a run killed after the first chunk: drop the second chunk's completion marker.
    (folder / "chunk-000002-000004.json").unlink()
    trained = []
    real = ens_mod.train_chunk

    def spy(*args, **kw):
        trained.append(args[4])
        return real(*args, **kw)

    monkeypatch.setattr(ens_mod, "train_chunk", spy)
    again = train_ensemble(factory, tiny_data, mask, CFG, cache_dir=tmp_path, chunk_size=2, progress=False)
    assert len(trained) == 1  # only the missing chunk was retrained
    for k in first.state:
        torch.testing.assert_close(first.state[k], again.state[k])
    train_ensemble(factory, tiny_data, mask, CFG, cache_dir=tmp_path, chunk_size=2, progress=False)
    assert len(trained) == 1  # everything reused

    other = train_ensemble(
        factory,
        tiny_data,
        mask,
        CFG.__class__(**{**CFG.to_dict(), "lr": 0.2, "adam_betas": CFG.adam_betas}),
        cache_dir=tmp_path,
        chunk_size=2,
        progress=False,
    )
    assert len(list(tmp_path.iterdir())) == 2 and not torch.equal(other.state["net.3.bias"], first.state["net.3.bias"])


def test_corrupt_chunk_is_refused(tiny_data, tmp_path):
    mask = membership_mask(2, len(tiny_data), seed=0)
    train_ensemble(factory, tiny_data, mask, CFG, cache_dir=tmp_path, progress=False)
    (folder,) = tmp_path.iterdir()
    (weights,) = folder.glob("chunk-*.safetensors")
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(CorruptArtifactError, match="cannot be read"):
        train_ensemble(factory, tiny_data, mask, CFG, cache_dir=tmp_path, progress=False)
    (folder / "ensemble.json").write_text('{"schema": "other"}')
    with pytest.raises(CorruptArtifactError, match="schema"):
        train_ensemble(factory, tiny_data, mask, CFG, cache_dir=tmp_path, progress=False)


def test_local_path_does_not_import_ray(tiny_data):
    train_ensemble(factory, tiny_data, membership_mask(2, len(tiny_data), seed=0), CFG, progress=False)
    assert "ray" not in sys.modules or "privlab.train.ray_backend" not in sys.modules


def test_ray_missing_gives_clear_error(tiny_data, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from privlab.train.ray_backend import RayUnavailableError

    with pytest.raises(RayUnavailableError, match=r"privlab\[ray\]"):
        train_ensemble(
            factory, tiny_data, membership_mask(2, len(tiny_data), seed=0), CFG, backend="ray", progress=False
        )


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed (pip install 'privlab[ray]')")
def test_ray_backend_matches_local(tiny_data, tmp_path):
    import ray

    # Ray workers import the factory by reference: use an importable one (a partial of privlab's MLP).
    remote_factory = functools.partial(MLP, in_features=16, hidden=(8,), num_classes=4)
    mask = membership_mask(4, len(tiny_data), seed=3)
    local = train_ensemble(factory, tiny_data, mask, CFG, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = train_ensemble(
            remote_factory, tiny_data, mask, CFG, backend="ray", chunk_size=2, cache_dir=tmp_path, progress=False
        )
    finally:
        ray.shutdown()
    for k in local.state:
        torch.testing.assert_close(local.state[k], remote.state[k], rtol=1e-5, atol=1e-6)
