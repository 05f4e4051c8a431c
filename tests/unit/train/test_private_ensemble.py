"""DP-SGD-style reference models: clipped kernel gradients, ensemble == loop, noise scale, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from privlab.data import membership_mask
from privlab.errors import InvalidParameterError
from privlab.models import MLP
from privlab.train import TrainConfig, stacked_mlp, train_ensemble
from privlab.train.stacked_mlp import mlp_grads, mlp_plan
from privlab.train.vmapped import train_chunk


def factory() -> MLP:
    return MLP(in_features=16, hidden=(12,), num_classes=4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLP(in_features=7, hidden=(6, 5), num_classes=4),
        lambda: MLP(in_features=7, hidden=(6,), num_classes=4, activation="tanh"),
        lambda: nn.Sequential(nn.Linear(7, 6, bias=False), nn.ReLU(), nn.Linear(6, 4)),
    ],
    ids=["relu-2-hidden", "tanh", "no-bias"],
)
@pytest.mark.parametrize("clip", [0.05, 1e3])  # most examples clipped / none clipped
@pytest.mark.parametrize("narrow", [0, 10**6], ids=["wide", "narrow"])  # orientation of the products
def test_clipped_kernel_grads_equal_per_example_autograd(monkeypatch, make, clip, narrow):
    monkeypatch.setattr(stacked_mlp, "NARROW", narrow)
    K, B = 3, 6
    gen = torch.Generator().manual_seed(1)
    models = [make() for _ in range(K)]
    plan = mlp_plan(models[0])
    named = [dict(m.named_parameters()) for m in models]
    params = {n: torch.stack([d[n].detach() for d in named]) for n in named[0]}
    x = torch.randn(K, B, 7, generator=gen)
    y = torch.randint(0, 4, (K * B,), generator=gen)
    out = mlp_grads(plan, params, x, y, {n: torch.empty_like(v) for n, v in params.items()}, clip=clip)
    clipped = 0
    for k, m in enumerate(models):
        want = {n: torch.zeros_like(p) for n, p in m.named_parameters()}
        for i in range(B):  # one backward per example, clipped by hand
            grads = torch.autograd.grad(
                F.cross_entropy(m(x[k, i : i + 1]), y[k * B + i : k * B + i + 1]), list(m.parameters())
            )
            norm = torch.sqrt(sum(g.square().sum() for g in grads))
            factor = min(1.0, clip / (float(norm) + 1e-6))
            clipped += factor < 1
            for (n, _), g in zip(m.named_parameters(), grads, strict=True):
                want[n] += factor * g / B
        for n in want:
            torch.testing.assert_close(out[n][k], want[n], rtol=1e-5, atol=1e-6)
    assert (clipped > 0) == (clip < 1)  # the small threshold really clips


CONFIGS = [
    TrainConfig(
        epochs=2,
        batch_size=8,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-3,
        seed=3,
        max_grad_norm=0.5,
        noise_multiplier=0.8,
    ),
    TrainConfig(epochs=2, batch_size=8, lr=0.01, optimizer="adam", seed=4, max_grad_norm=0.3, noise_multiplier=1.5),
    TrainConfig(epochs=2, batch_size=5, lr=0.2, momentum=0.0, seed=5, max_grad_norm=0.2),  # clipping only
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["sgd-momentum-noise", "adam-noise", "clip-only"])
def test_private_ensemble_equals_private_loop(tiny_data, cfg):
    mask = membership_mask(4, len(tiny_data), seed=1)  # unequal IN sets: models take different step counts
    ens = train_ensemble(factory, tiny_data, mask, cfg, progress=False)
    loop = train_ensemble(factory, tiny_data, mask, cfg, backend="loop", progress=False)
    plain = train_ensemble(
        factory,
        tiny_data,
        mask,
        TrainConfig(**{**cfg.to_dict(), "max_grad_norm": 0.0, "noise_multiplier": 0.0, "adam_betas": cfg.adam_betas}),
        progress=False,
    )
    for name in ens.state:
        torch.testing.assert_close(ens.state[name], loop.state[name], rtol=1e-4, atol=1e-5)
    # Negative control: DP-style training does change the models.
    assert max(float((ens.state[n] - plain.state[n]).abs().max()) for n in ens.state) > 1e-2


def _one_step_update(scale_cfg: TrainConfig, tiny_data) -> np.ndarray:
    mask = np.ones((8, len(tiny_data)), dtype=bool)
    before = train_ensemble(
        factory,
        tiny_data,
        mask,
        TrainConfig(**{**scale_cfg.to_dict(), "lr": 0.0, "adam_betas": scale_cfg.adam_betas}),
        progress=False,
    )
    after = train_ensemble(factory, tiny_data, mask, scale_cfg, progress=False)
    return np.concatenate([(after.state[n] - before.state[n]).flatten().numpy() for n in after.state])


@pytest.mark.parametrize("model_scale", [1.0, 2 / 3, 1.5])
def test_noise_has_the_stated_scale(tiny_data, model_scale):
    # Clipping to C = 1e-4 leaves a data gradient of norm <= 1e-4; the noise on the mean gradient has
    # std sigma C / B = 0.0125, so one SGD step with lr 1 moves each parameter by N(0, 0.0125^2).
    B, C, sigma = 8, 1e-4, 1000.0
    cfg = TrainConfig(
        epochs=B / len(tiny_data),
        batch_size=B,
        lr=1.0,
        momentum=0.0,
        seed=7,
        max_grad_norm=C,
        noise_multiplier=sigma,
    )
    delta = _one_step_update(cfg, tiny_data)
    expected_std = model_scale * sigma * C / B  # the scale the test assumes; only 1.0 is right
    n = len(delta)
    stat = float(np.sum((delta / expected_std) ** 2))
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], n)
    assert (lo < stat < hi) == (model_scale == 1.0)


def test_non_mlp_private_training_falls_back_to_the_loop(tiny_data):
    class Conv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).flatten(1))

    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, seed=2, max_grad_norm=0.5, noise_multiplier=1.0)
    mask = membership_mask(2, len(tiny_data), seed=3)
    auto = train_ensemble(Conv, tiny_data, mask, cfg, progress=False)
    loop = train_ensemble(Conv, tiny_data, mask, cfg, backend="loop", progress=False)
    for name in auto.state:
        torch.testing.assert_close(auto.state[name], loop.state[name])
    with pytest.raises(InvalidParameterError, match="max_grad_norm"):
        train_chunk(Conv, tiny_data.x, tiny_data.y, mask, [0, 1], cfg)
    with pytest.raises(InvalidParameterError, match="'backend'"):
        train_ensemble(Conv, tiny_data, mask, cfg, backend="ray", progress=False)


def test_noise_needs_clipping():
    with pytest.raises(InvalidParameterError, match="noise_multiplier"):
        TrainConfig(noise_multiplier=1.0)
    assert not TrainConfig().private and TrainConfig(max_grad_norm=1.0).private


def test_private_mlp_with_the_vmap_kernel_falls_back_to_the_loop(tiny_data):
    # kernel="vmap" has no clipping: like a non-MLP model, the ensemble trains one by one (no error).
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, seed=2, max_grad_norm=0.5, noise_multiplier=1.0)
    mask = membership_mask(2, len(tiny_data), seed=3)
    vmap = train_ensemble(factory, tiny_data, mask, cfg, kernel="vmap", progress=False)
    loop = train_ensemble(factory, tiny_data, mask, cfg, backend="loop", progress=False)
    for name in vmap.state:
        torch.testing.assert_close(vmap.state[name], loop.state[name])
