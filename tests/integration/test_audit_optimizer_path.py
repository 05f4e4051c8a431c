"""The probe-canary audit runs through make_private/DPOptimizer, so it sees the production path.

Positive controls: the optimizer's own fault flags (noise off, clipping off) make the lower bound
exceed the claim of 1.5, in flat and ghost modes. Negative control: the correct optimizer is not
flagged (checked on seeds 0-2 when written; one seed runs by default).
"""

from __future__ import annotations

import pytest
import torch

from privlab.audit import AuditSpec
from privlab.audit.dp_training import audit_summary
from privlab.audit.optimizer_canaries import ProbeWrapper, audit_dp_optimizer
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.models import MLP


def _data(n: int = 600) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return ArrayDataset(x, (x.mean((1, 2, 3)) > 0.5).long())


def _factory() -> MLP:
    return MLP(in_features=64, hidden=(16,), num_classes=2)


def _run(clipping: str, fault: str | None, seed: int = 0):
    # 600 rows + ~150 IN canaries, batches of ~40, 4 passes
    spec = AuditSpec(
        _factory, _data(), sample_rate=40 / 750, steps=76, target_epsilon=1.5, clipping=clipping, seed=seed
    )
    return audit_dp_optimizer(spec, canaries=300, fault=fault, progress=False)


@pytest.mark.parametrize("clipping", ["flat", "ghost"])
@pytest.mark.parametrize("fault", ["no_noise", "no_clipping"])
def test_broken_optimizer_is_caught(clipping: str, fault: str) -> None:
    res = _run(clipping, fault)
    assert res.violated, audit_summary(res)


@pytest.mark.parametrize("clipping", ["flat", "per_layer", "ghost"])
def test_correct_optimizer_is_consistent(clipping: str) -> None:
    res = _run(clipping, None)
    assert res.claimed_epsilon == pytest.approx(1.5, rel=0.01)
    assert not res.violated, audit_summary(res)
    assert "DPOptimizer" in res.test


def test_probe_is_quiet_for_real_data() -> None:
    w = ProbeWrapper(MLP(in_features=64, hidden=(8,), num_classes=2), (1, 8, 8), 2, 5)
    x = torch.cat([torch.rand(3, 64), torch.zeros(3, 5)], dim=1)
    torch.nn.functional.cross_entropy(w(x), torch.tensor([0, 1, 0])).backward()
    assert w.probe.weight.grad is not None and w.probe.weight.grad.abs().max() == 0.0


def test_bad_fault_is_named() -> None:
    with pytest.raises(InvalidParameterError, match="'fault' parameter"):
        audit_dp_optimizer(AuditSpec(_factory, _data(), sample_rate=0.02, steps=1, noise_multiplier=1.0), fault="bogus")
