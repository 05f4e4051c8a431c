"""SISA: a removal equals retraining the affected shard from its slice checkpoint; interruptions are safe."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from privlab.data import ArrayDataset
from privlab.models import MLP
from privlab.train import TrainConfig, init_model, train_model
from privlab.unlearn import UnlearnConfig, forget_split, load_sisa, reinit, train_sisa, unlearn
from privlab.unlearn import sisa as sisa_mod

CFG = UnlearnConfig(method="sisa", train=TrainConfig(epochs=3, batch_size=32, lr=0.05, seed=3), shards=2, slices=3)


def _factory() -> MLP:
    return MLP(hidden=(16,))


def test_removal_is_bit_identical_to_retraining_the_shard_from_its_checkpoint(
    mnist_small: ArrayDataset, tmp_path: Path
) -> None:
    cfg = replace(CFG, checkpoint_dir=str(tmp_path / "sisa"))
    ens = train_sisa(init_model(_factory, 0), mnist_small, cfg)
    old = json.loads((tmp_path / "sisa" / "manifest.json").read_text())
    victim = old["slice_rows"][0][1][0]  # shard 0, slice 1
    split = forget_split(mnist_small, [victim])
    res = unlearn(ens, split.forget, split.retain, cfg)
    new = json.loads((tmp_path / "sisa" / "manifest.json").read_text())
    assert res.details["shards_retrained"] == [0] and res.details["first_slice"] == {"0": 1}
    assert new["checkpoints"][0][0] == old["checkpoints"][0][0]  # slice 0 of shard 0 was not retrained
    assert new["checkpoints"][1] == old["checkpoints"][1]  # shard 1 untouched
    # reference: shard 0 from its slice-0 checkpoint, slices 1 and 2 without the victim, same seeds
    ref = reinit(init_model(_factory, 0), 0)
    ref.load_state_dict(load_file(str(tmp_path / "sisa" / old["checkpoints"][0][0])))
    for r in (1, 2):
        rows = [i for s in range(r + 1) for i in old["slice_rows"][0][s] if i != victim]
        tc = replace(CFG.train, epochs=CFG.train.epochs / 3, seed=sisa_mod.stage_seed(CFG.train.seed, 0, r))
        train_model(ref, mnist_small.subset(torch.as_tensor(rows)), tc)
    got = res.model.members[0].state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(got[k], v), k
    for k, v in ens.members[1].state_dict().items():
        assert torch.equal(res.model.members[1].state_dict()[k], v)
    # cost: shard 0 re-ran 2 of its 3 stages; half the shards were touched
    print(f"SISA retraining fraction after removing 1 row: {res.fraction_retrained:.3f}")
    assert 0.2 < res.fraction_retrained < 0.5
    # the ensemble aggregates: log of the mean of the shards' probabilities
    x = mnist_small.x[:5]
    probs = torch.stack([torch.softmax(m(x), 1) for m in res.model.members]).mean(0)
    assert torch.allclose(res.model(x).exp(), probs, atol=1e-6)
    # reopening from disk gives the same ensemble
    again = load_sisa(tmp_path / "sisa", init_model(_factory, 0), mnist_small)
    assert torch.equal(again(x), res.model(x))


def test_interrupted_removal_leaves_previous_checkpoints_usable(
    mnist_small: ArrayDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = replace(CFG, checkpoint_dir=str(tmp_path / "sisa"))
    ens = train_sisa(init_model(_factory, 0), mnist_small, cfg)
    manifest = (tmp_path / "sisa" / "manifest.json").read_text()
    x = mnist_small.x[:20]
    before = ens(x)
    calls = {"n": 0}
    real = sisa_mod.train_model

    def dies(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed mid-removal")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sisa_mod, "train_model", dies)
    split = forget_split(mnist_small, list(range(0, 400, 7)))  # every shard, from slice 0
    with pytest.raises(KeyboardInterrupt):
        unlearn(ens, split.forget, split.retain, cfg)
    assert (tmp_path / "sisa" / "manifest.json").read_text() == manifest
    reopened = load_sisa(tmp_path / "sisa", init_model(_factory, 0), mnist_small)
    assert torch.equal(reopened(x), before)
    monkeypatch.setattr(sisa_mod, "train_model", real)
    res = unlearn(reopened, split.forget, split.retain, cfg)  # the retry cleans the half-written generation
    assert res.details["generation"] == 1 and sorted(res.details["shards_retrained"]) == [0, 1]
    assert res.fraction_retrained == pytest.approx(1.0)
