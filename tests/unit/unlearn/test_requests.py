"""Removal requests mean what they say: U-LiRA's forget halves are never empty, a sequence of requests
refuses a repeated row, retraining re-draws every parameter, and a repeated forget row is named as such."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import privlab.unlearn.evaluation as E
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError, UnsupportedModuleError
from privlab.models import MLP
from privlab.train import TrainConfig, init_model
from privlab.unlearn import UnlearnConfig, attach_factory, forget_split, get_method, reinit, unlearn
from privlab.unlearn.ulira import ULiRAConfig, shadow_masks, ulira

CFG = UnlearnConfig(method="finetune", epochs=1, train=TrainConfig(epochs=1, batch_size=32, lr=0.05))


def _data(n: int, d: int = 4, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    return ArrayDataset(torch.randn(n, d, generator=g), torch.randint(0, 2, (n,), generator=g))


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_shadow_forget_halves_are_balanced_and_complementary(m: int) -> None:
    idx = np.arange(m) * 3 + 1
    for seed in range(50):
        train, forget = shadow_masks(40, idx, 8, seed)
        sizes = forget.sum(1)
        assert set(sizes[0::2]) == {m // 2} and set(sizes[1::2]) == {m - m // 2}
        assert (forget[0::2] ^ forget[1::2])[:, idx].all() and not forget[:, np.setdiff1d(np.arange(40), idx)].any()
        assert (train >= forget).all()
    # the split is random: over seeds, every candidate lands on the floor(m/2) side sometimes and not always
    side = np.stack([shadow_masks(40, idx, 8, s)[1][0, idx] for s in range(50)])
    assert (side.mean(0) > 0).all() and (side.mean(0) < 1).all()


def test_ulira_runs_with_three_candidates() -> None:
    """Three candidates, 6 shadows: a coin-flip half was empty for some pair in ~58% of seeds."""
    data = _data(120)
    idx = np.array([3, 7, 11])
    for seed in range(3):
        res = ulira(
            "finetune",
            lambda: MLP(in_features=4, hidden=(4,), num_classes=2),
            data,
            idx,
            CFG,
            ULiRAConfig(6, n_bootstrap=0, seed=seed),
        )
        assert res.candidates == 3 and 0.0 <= res.metrics.auc <= 1.0


def _spy_sequence(monkeypatch: pytest.MonkeyPatch, data: ArrayDataset, idx: list[int]) -> list[list[int]]:
    seen: list[list[int]] = []
    real = E.unlearn
    keys = {data.x[i].numpy().tobytes(): i for i in range(len(data))}

    def spy(model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, config: UnlearnConfig) -> object:
        seen.append(sorted(keys[f.numpy().tobytes()] for f in forget.x))
        return real(model, forget, retain, config)

    monkeypatch.setattr(E, "unlearn", spy)
    E.sequence(
        "finetune",
        lambda: MLP(in_features=4, hidden=(4,), num_classes=2),
        data,
        np.array(idx),
        _data(30, seed=1),
        CFG,
        requests=2,
    )
    return seen


@pytest.mark.parametrize(
    ("idx", "what"),
    [([5, 9, 5, 20], "already removed"), ([5, 5, 9, 20], "twice"), ([5, 9, 60, 20], "0..59"), ([5, 9, -1, 2], "0..59")],
)
def test_sequence_refuses_a_bad_request(monkeypatch: pytest.MonkeyPatch, idx: list[int], what: str) -> None:
    with pytest.raises(InvalidParameterError, match=f"'forget_index'.*{what}") as err:
        _spy_sequence(monkeypatch, _data(60), idx)
    assert "sequence" in str(err.value)


def test_sequence_unlearns_exactly_the_requested_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _spy_sequence(monkeypatch, _data(60), [5, 9, 6, 20]) == [[5, 9], [6, 20]]


class _Net(nn.Module):
    """A raw nn.Parameter and nn.MultiheadAttention's in_proj: parameters no reset_parameters re-draws."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(8))
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x * self.scale)[:, None]
        return self.head(self.attn(h, h, h)[0][:, 0])


RCFG = UnlearnConfig(method="retrain", train=TrainConfig(epochs=3, batch_size=32, lr=0.1, seed=0))


def _net_data() -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    return ArrayDataset(x, (x[:, 0] > 0).long())


def test_retrain_refuses_parameters_reset_parameters_misses() -> None:
    data = _net_data()
    original = get_method("retrain").train(init_model(_Net, 0), data, RCFG)
    split = forget_split(data, list(range(10)))
    with pytest.raises(UnsupportedModuleError, match="'model'") as err:
        unlearn(original, split.forget, split.retain, RCFG)
    assert all(n in str(err.value) for n in ("'scale'", "'attn.in_proj_weight'", "attach_factory"))
    # control: an architecture reset_parameters fully covers is re-drawn without a factory
    mlp = get_method("retrain").train(init_model(lambda: MLP(in_features=8, hidden=(4,), num_classes=2), 0), data, RCFG)
    fresh = reinit(mlp, 0)
    assert all(not torch.equal(a, b) for a, b in zip(fresh.parameters(), mlp.parameters(), strict=True))


def test_retrain_with_a_factory_is_a_from_scratch_retrain() -> None:
    data = _net_data()
    original = attach_factory(get_method("retrain").train(init_model(_Net, 0), data, RCFG), _Net)
    split = forget_split(data, list(range(10)))
    res = unlearn(original, split.forget, split.retain, RCFG)
    gold = get_method("retrain").train(init_model(_Net, RCFG.train.seed), split.retain, RCFG)
    for (name, a), b in zip(res.model.named_parameters(), gold.parameters(), strict=True):
        assert torch.equal(a, b), name
    # and evaluate() records the factory, so its retrain method is bit-identical to its reference
    ev = E.evaluate("retrain", _Net, data, np.arange(10), _data(30, d=8, seed=1), RCFG, n_bootstrap=0)
    assert ev.unlearned.to_dict() == ev.retrained.to_dict() and ev.privleak == 0.0
    with pytest.raises(InvalidParameterError, match="'factory'"):
        reinit(original, 0, factory=lambda: MLP(in_features=8, hidden=(), num_classes=2))


def test_a_repeated_forget_row_is_named_as_repeated() -> None:
    data = _data(20, d=3)
    with pytest.raises(InvalidParameterError, match="must not repeat a row"):
        forget_split(data, data.subset(torch.tensor([3, 3])))
    with pytest.raises(InvalidParameterError, match="must be a subset"):  # control: a row that is not in train
        forget_split(data, _data(2, d=3, seed=5))
    twice = ArrayDataset(torch.cat([data.x, data.x[:1]]), torch.cat([data.y, data.y[:1]]))
    assert sorted(forget_split(twice, data.subset(torch.tensor([0, 0]))).index.tolist()) == [0, 20]
