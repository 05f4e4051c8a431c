"""The vectorised ensemble equals K models trained one by one; config, validation and sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from privlab.data import membership_mask
from privlab.errors import ConfigError, InvalidParameterError
from privlab.models import MLP
from privlab.train import (
    TrainConfig,
    index_stream,
    init_model,
    model_seed,
    one_by_one,
    train_ensemble,
    train_model,
)


def factory() -> MLP:
    return MLP(in_features=16, hidden=(12,), num_classes=4)


CONFIGS = [
    TrainConfig(epochs=3, batch_size=8, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=1e-3, seed=3),
    TrainConfig(epochs=3, batch_size=8, lr=0.01, optimizer="adam", weight_decay=1e-3, seed=4),
    TrainConfig(epochs=2.5, batch_size=5, lr=0.2, optimizer="sgd", momentum=0.0, seed=5),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["sgd-momentum-wd", "adam", "plain-sgd"])
@pytest.mark.parametrize("kernel", ["mlp", "vmap"])
def test_vectorised_equals_loop_reference(tiny_data, cfg, kernel):
    # Unequal IN-set sizes (p_in=0.5, not balanced): models take different numbers of steps.
    mask = membership_mask(5, len(tiny_data), seed=1)
    assert len(set(mask.sum(1).tolist())) > 1
    _assert_matches_loop(factory, tiny_data, mask, cfg, kernel)


def _assert_matches_loop(make, data, mask, cfg, kernel) -> None:
    """The ensemble equals a naive reference written out here: each model initialised with its seed
    and trained alone on its IN subset by the plain loop."""
    ens = train_ensemble(make, data, mask, cfg, progress=False, kernel=kernel)
    for k in range(len(mask)):
        seed = model_seed(cfg.seed, k)
        ref = init_model(make, seed)
        train_model(
            ref,
            data.subset(torch.as_tensor(mask[k])),
            TrainConfig(**{**cfg.to_dict(), "seed": seed, "adam_betas": cfg.adam_betas}),
        )
        for name, p in ref.state_dict().items():
            torch.testing.assert_close(ens.state[name][k], p, rtol=1e-5, atol=1e-5)


def _frozen_first_layer() -> MLP:
    m = factory()
    m.net[1].weight.requires_grad_(False)
    return m


def _shared_activation() -> nn.Module:
    act = nn.ReLU()  # one instance after both hidden layers
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), act, nn.Linear(12, 8), act, nn.Linear(8, 4))


@pytest.mark.parametrize("cfg", CONFIGS, ids=["sgd-momentum-wd", "adam", "plain-sgd"])
@pytest.mark.parametrize("kernel", ["auto", "vmap"])
@pytest.mark.parametrize("make", [_frozen_first_layer, _shared_activation], ids=["frozen-param", "shared-act"])
def test_vectorised_equals_loop_on_edge_architectures(tiny_data, cfg, kernel, make):
    # A frozen parameter is not in train_model's optimizer (no step, no weight decay); a reused
    # activation module is applied at every position Sequential.forward calls it.
    _assert_matches_loop(make, tiny_data, membership_mask(3, len(tiny_data), seed=1), cfg, kernel)


@pytest.mark.parametrize("kernel", ["auto", "vmap"])
def test_no_trainable_parameter_is_refused(tiny_data, kernel):
    # train_model's torch.optim refuses an empty parameter list; the ensemble must not crash in a
    # foreach kernel nor return untrained models silently.
    def frozen() -> MLP:
        return factory().requires_grad_(False)

    mask = np.ones((2, len(tiny_data)), dtype=bool)
    with pytest.raises(InvalidParameterError, match="trainable"):
        train_ensemble(frozen, tiny_data, mask, CONFIGS[0], progress=False, kernel=kernel)


def test_chunking_and_loop_backend_agree(tiny_data):
    cfg = CONFIGS[0]
    mask = membership_mask(5, len(tiny_data), seed=2)
    whole = train_ensemble(factory, tiny_data, mask, cfg, progress=False)
    chunked = train_ensemble(factory, tiny_data, mask, cfg, chunk_size=2, progress=False)
    loop = train_ensemble(factory, tiny_data, mask, cfg, backend="loop", progress=False)
    for name in whole.state:
        torch.testing.assert_close(whole.state[name], chunked.state[name], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(whole.state[name], loop.state[name], rtol=1e-5, atol=1e-5)
    assert whole.n_models == 5 and len(whole.models) == 5
    m = whole.model(3)
    torch.testing.assert_close(m.state_dict()["net.1.weight"], whole.state["net.1.weight"][3])


def test_models_differ_and_training_fits(tiny_data):
    cfg = TrainConfig(epochs=30, batch_size=16, lr=0.1, seed=0)
    mask = np.ones((2, len(tiny_data)), dtype=bool)
    ens = train_ensemble(factory, tiny_data, mask, cfg, progress=False)
    assert not torch.allclose(ens.state["net.1.weight"][0], ens.state["net.1.weight"][1])
    acc = (ens.model(0)(tiny_data.x).argmax(1) == tiny_data.y).float().mean().item()
    assert acc > 0.8


def test_user_train_fn(tiny_data):
    calls = []

    def my_train(model, data, cfg):
        calls.append((len(data), cfg.seed))
        return train_model(model, data, cfg)

    mask = membership_mask(3, len(tiny_data), seed=0)
    cfg = CONFIGS[2]
    ens = train_ensemble(factory, tiny_data, mask, cfg, train_fn=my_train, progress=False)
    assert [c[0] for c in calls] == mask.sum(1).tolist()
    assert [c[1] for c in calls] == [model_seed(cfg.seed, k) for k in range(3)]
    ref = one_by_one(factory, tiny_data, mask, ens.seeds, cfg)
    torch.testing.assert_close(ens.state["net.3.bias"], ref["net.3.bias"])


def test_index_stream_is_permutations():
    s = index_stream(10, steps=4, batch_size=5, seed=0)
    assert s.shape == (4, 5)
    flat = s.flatten()
    assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:].tolist()) == list(range(10))
    assert torch.equal(s, index_stream(10, 4, 5, seed=0))
    assert not torch.equal(s, index_stream(10, 4, 5, seed=1))
    assert model_seed(0, 1) != model_seed(0, 2) and model_seed(0, 1) == model_seed(0, 1)


def test_config_roundtrip_and_validation():
    cfg = TrainConfig(epochs=2, optimizer="adam", seed=7)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.hash() == TrainConfig.from_dict(cfg.to_dict()).hash() != TrainConfig(epochs=3).hash()
    with pytest.raises(InvalidParameterError, match="The 'optimizer' parameter of TrainConfig"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(InvalidParameterError, match="'batch_size'"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="unknown keys"):
        TrainConfig.from_dict({"epochz": 1})


def test_ensemble_validation(tiny_data):
    cfg = CONFIGS[0]
    with pytest.raises(InvalidParameterError, match="'mask' parameter of train_ensemble"):
        train_ensemble(factory, tiny_data, np.ones((2, 5), bool), cfg, progress=False)
    bad = np.ones((2, len(tiny_data)), bool)
    bad[1] = False
    with pytest.raises(InvalidParameterError, match="at least one example"):
        train_ensemble(factory, tiny_data, bad, cfg, progress=False)
    with pytest.raises(InvalidParameterError, match="'backend'"):
        train_ensemble(factory, tiny_data, bad[:1], cfg, backend="spark", progress=False)


def test_vectorised_equals_loop_for_a_cnn():
    from privlab.data import ArrayDataset
    from privlab.models import SmallCNN

    gen = torch.Generator().manual_seed(1)
    data = ArrayDataset(torch.rand(24, 1, 28, 28, generator=gen), torch.randint(0, 10, (24,), generator=gen))
    mask = membership_mask(3, 24, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.05, seed=2)
    ens = train_ensemble(SmallCNN, data, mask, cfg, progress=False)
    ref = train_ensemble(SmallCNN, data, mask, cfg, backend="loop", progress=False)
    for name in ens.state:
        torch.testing.assert_close(ens.state[name], ref.state[name], rtol=1e-4, atol=1e-5)
