"""Validators refuse example-mixing modules with a why-and-how message; replace_batchnorm fixes BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from privlab.data import ArrayDataset
from privlab.dp import make_private, replace_batchnorm, validate_module
from privlab.errors import UnsupportedModuleError


def cnn_with_bn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.BatchNorm2d(6), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(6 * 4 * 4, 2)
    )


def test_batchnorm_is_refused_with_why_and_how() -> None:
    with pytest.raises(UnsupportedModuleError) as err:
        validate_module(cnn_with_bn())
    msg = str(err.value)
    assert "BatchNorm2d" in msg and "mixes examples" in msg
    assert "replace_batchnorm" in msg and "GroupNorm" in msg


def test_make_private_refuses_before_training() -> None:
    model = cnn_with_bn()
    ds = ArrayDataset(torch.randn(8, 1, 6, 6), torch.zeros(8, dtype=torch.long))
    with pytest.raises(UnsupportedModuleError, match="mixes examples"):
        make_private(
            model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(ds, batch_size=2), noise_multiplier=1.0
        )


def test_instancenorm_with_running_stats_and_unknown_layers_are_refused() -> None:
    with pytest.raises(UnsupportedModuleError, match="track_running_stats"):
        validate_module(nn.Sequential(nn.InstanceNorm1d(3, track_running_stats=True)))
    validate_module(nn.Sequential(nn.InstanceNorm1d(3)))  # no running stats, no parameters: fine
    with pytest.raises(UnsupportedModuleError, match="no per-example"):
        validate_module(nn.LSTM(3, 4))
    lstm = nn.LSTM(3, 4).requires_grad_(False)
    validate_module(lstm)  # frozen: fine
    with pytest.raises(UnsupportedModuleError, match="groups=2"):
        validate_module(nn.Conv2d(4, 4, 3, groups=2))


def test_replace_batchnorm_then_train() -> None:
    model = replace_batchnorm(cnn_with_bn(), groups=4)
    gn = model[1]
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 3 and gn.num_channels == 6  # largest divisor <= 4
    validate_module(model)
    ds = ArrayDataset(torch.randn(16, 1, 6, 6), torch.randint(0, 2, (16,)))
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(ds, batch_size=4),
        noise_multiplier=1.0,
        clipping="ghost",
        seed=0,
    )
    for x, y in pt.data_loader:  # in-place ReLU in the loop
        pt.optimizer.zero_grad()
        nn.functional.cross_entropy(pt.model(x), y).backward()
        pt.optimizer.step()
    assert pt.accountant.steps == 4
    assert isinstance(replace_batchnorm(nn.BatchNorm1d(8)), nn.GroupNorm)
