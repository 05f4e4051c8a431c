"""End-to-end audit of DP-SGD: a correct run is consistent with its claim, a broken one is caught.

Positive control: noise switched off, or clipping bypassed, while the accountant still claims
epsilon = 1.5 -> the one-run lower bound exceeds the claim. Negative control: the correct
implementation at the same claim is never flagged (checked on seeds 0-2 when written; each run
takes a few seconds, so the default suite runs one seed and the slow suite three).
"""

from __future__ import annotations

import pytest
import torch

from privlab.audit import AuditSpec
from privlab.audit.dp_training import audit_dp_training, audit_summary, quiet_coordinates
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.models import MLP


def _data(n: int = 800, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[:, :, :2, :] = 0.0  # two always-zero "pixel" rows, like MNIST's black border
    y = (x[:, 0, 4:, :].mean((1, 2)) > 0.5).long()
    return ArrayDataset(x, y)


def _factory() -> MLP:
    return MLP(in_features=64, hidden=(16,), num_classes=2)


def _run(fault: str | None, seed: int = 0):
    spec = AuditSpec(_factory, _data(), sample_rate=0.05, steps=80, target_epsilon=1.5, seed=seed)
    return audit_dp_training(spec, canaries=400, fault=fault, progress=False)


@pytest.mark.parametrize("fault", ["no_noise", "no_clipping"])
def test_broken_dp_sgd_is_caught(fault: str) -> None:
    res = _run(fault)
    assert res.claimed_epsilon == pytest.approx(1.5, rel=0.01)
    assert res.violated, audit_summary(res)
    assert res.audit.epsilon_lower_bound > res.claimed_epsilon
    assert "VIOLATED" in audit_summary(res)


def test_correct_dp_sgd_is_consistent() -> None:
    res = _run(None)
    assert not res.violated, audit_summary(res)
    assert 0.0 <= res.audit.epsilon_lower_bound <= res.claimed_epsilon
    d = res.to_dict()
    assert d["audit"]["confidence"] == pytest.approx(0.95)
    assert d["fault"] is None


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_correct_dp_sgd_is_consistent_more_seeds(seed: int) -> None:
    assert not _run(None, seed).violated


def test_quiet_coordinates_avoid_data_gradients() -> None:
    model = _factory()
    data = _data()
    coords = quiet_coordinates(model, torch.nn.functional.cross_entropy, data, 32, torch.Generator().manual_seed(0))
    # 16 units x 16 always-zero inputs = 256 first-layer weights whose gradient is exactly zero, so
    # 32 quiet coordinates exist; the real data must not touch any chosen one.
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(data.x), data.y, reduction="sum").backward()
    flat = torch.cat([p.grad.abs().reshape(-1) for p in model.parameters()])
    assert flat[coords].max() == 0.0
    assert flat.max() > 0.0


def test_invalid_arguments_are_named() -> None:
    with pytest.raises(InvalidParameterError, match="Exactly one of 'noise_multiplier' and 'target_epsilon'"):
        AuditSpec(_factory, _data(), sample_rate=0.1, steps=5)
    with pytest.raises(InvalidParameterError, match="'sample_rate' parameter of AuditSpec"):
        AuditSpec(_factory, _data(), sample_rate=1.5, steps=5, noise_multiplier=1.0)
    spec = AuditSpec(_factory, _data(), sample_rate=0.1, steps=5, noise_multiplier=1.0)
    with pytest.raises(InvalidParameterError, match="'fault' parameter"):
        audit_dp_training(spec, fault="bogus")
    with pytest.raises(InvalidParameterError, match="'canaries' parameter"):
        audit_dp_training(spec, canaries=10**7)
