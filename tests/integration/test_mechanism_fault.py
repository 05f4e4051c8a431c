"""A fault injected into the one DP-SGD mechanism (privlab.dp.mechanism) is noticed everywhere.

The two primitives every DP-SGD path calls, ``mechanism.gaussian_noise`` (the noise source) and
``mechanism.clip_factors`` (the clipping rule), are replaced by a broken version: noise of scale 0, or
no clipping (factors 1). No audit is told (``fault=None``; the accountant still claims the intended
epsilon). Every audit entry point, the pipeline's audit stage and the reference-model trainers'
DP check must then report a violation; the same checks on the intact mechanism pass (the negative
controls of the audits live in their own test files; the trainer check's control is here).
Configurations are those of the audits' own tests (tolerances checked there on seeds 0-2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from privlab.accounting import calibrate_noise
from privlab.audit import (
    AuditSpec,
    audit_dp_optimizer,
    audit_dp_training,
    audit_dp_training_blackbox,
    audit_dp_training_multi_run,
)
from privlab.audit.dp_training import audit_summary
from privlab.data import ArrayDataset, availability
from privlab.dp import mechanism
from privlab.models import MLP
from privlab.pipeline import config_from_dict
from privlab.pipeline.run import audit_stage
from privlab.pipeline.stages import TrainedTarget, load_population
from privlab.train import TrainConfig, train_ensemble


def _no_noise(like: torch.Tensor, std: float, generator: Any = None, secure: bool = False) -> torch.Tensor:
    return torch.zeros_like(like)


def _no_clipping(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    return torch.ones_like(norms)


FAULTS: dict[str, tuple[str, Callable[..., torch.Tensor]]] = {
    "noise_scale_0": ("gaussian_noise", _no_noise),
    "clipping_off": ("clip_factors", _no_clipping),
}


@pytest.fixture(params=sorted(FAULTS))
def fault(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name, broken = FAULTS[request.param]
    monkeypatch.setattr(mechanism, name, broken)
    return str(request.param)


def _dirac_data(n: int = 800) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[:, :, :2, :] = 0.0  # always-zero "pixels": quiet coordinates for Dirac canaries
    return ArrayDataset(x, (x[:, 0, 4:, :].mean((1, 2)) > 0.5).long())


_W = torch.randn(10, 64, generator=torch.Generator().manual_seed(123))


def _ten_class(n: int, seed: int) -> ArrayDataset:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return ArrayDataset(x, ((x.reshape(n, -1) - 0.5) @ _W.T).argmax(1), "synthetic", tuple("0123456789"))


def _mlp(hidden: int, classes: int) -> Callable[[], MLP]:
    return lambda: MLP(in_features=64, hidden=(hidden,), num_classes=classes)


def test_white_box_one_run_notices(fault: str) -> None:
    spec = AuditSpec(_mlp(16, 2), _dirac_data(), sample_rate=0.05, steps=80, target_epsilon=1.5)
    res = audit_dp_training(spec, canaries=400, progress=False)
    assert res.fault is None and res.violated, audit_summary(res)


def test_optimizer_probe_audit_notices(fault: str) -> None:
    spec = AuditSpec(_mlp(16, 2), _dirac_data(600), sample_rate=40 / 750, steps=76, target_epsilon=1.5)
    res = audit_dp_optimizer(spec, canaries=300, progress=False)
    assert res.violated, audit_summary(res)


def test_multi_run_audit_notices(fault: str) -> None:
    torch.set_num_threads(1)
    spec = AuditSpec(_mlp(8, 2), _dirac_data(64), sample_rate=1.0, steps=5, target_epsilon=1.0)
    res = audit_dp_training_multi_run(spec, runs=100, progress=False)
    assert res.violated, audit_summary(res)


def test_black_box_audit_notices(fault: str) -> None:
    torch.set_num_threads(1)
    if fault == "noise_scale_0":  # memorising the canaries' wrong labels needs steps of a few units
        cfg: dict[str, Any] = {"target_epsilon": 1.0, "max_grad_norm": 1.0, "lr": 5.0, "steps": 200}
    else:  # C small against the gradients: unclipped gradients drown the noise sigma C
        cfg = {"target_epsilon": 0.5, "max_grad_norm": 0.01, "lr": 0.5, "steps": 100}
    spec = AuditSpec(_mlp(128, 10), _ten_class(200, 0), sample_rate=0.5, **cfg)
    res = audit_dp_training_blackbox(spec, canary_pool=_ten_class(200, 1), canaries=200, progress=False)
    assert res.violated, audit_summary(res)


def test_pipeline_audit_notices(fault: str, tmp_path: Path) -> None:
    if availability().get("mnist") is not None:
        pytest.skip("MNIST not installed")
    cfg = config_from_dict(
        {
            "name": "fault",
            "output_dir": str(tmp_path),
            "data": {"dataset": "mnist", "population": 1600, "test_size": 100},
            "targets": [
                {
                    "name": "dp",
                    "hidden": [16],
                    "train": {"epochs": 4, "batch_size": 40, "lr": 0.5, "momentum": 0.0},
                    "dp": {"target_epsilon": 1.5},
                }
            ],
            "attack": {"reference_models": 2, "attacks": ["loss"]},
            "audit": {"canaries": 400},
        }
    )
    pop = load_population(cfg)
    n = len(pop.members)
    q, steps = 40 / n, 4 * round(n / 40)  # what make_private records for this target
    sigma = calibrate_noise(1.5, q, steps, 1e-5)
    target = TrainedTarget("dp", torch.nn.Identity(), {}, None, sigma, q, steps)
    audits = audit_stage(cfg, target, pop, tmp_path, progress=False)
    assert [a["violates_claim"] for a in audits] == [True, True], audits


def _one_step(cfg: TrainConfig, backend: str) -> np.ndarray:
    """(8, P) parameter change of 8 models after one DP-SGD-style step of the reference trainer."""
    data = _dirac_data(96)
    mask = np.ones((8, len(data)), dtype=bool)
    frozen = TrainConfig(**{**cfg.to_dict(), "lr": 0.0, "adam_betas": cfg.adam_betas})
    before = train_ensemble(_mlp(12, 2), data, mask, frozen, backend=backend, progress=False)
    after = train_ensemble(_mlp(12, 2), data, mask, cfg, backend=backend, progress=False)
    return np.concatenate([(after.state[k] - before.state[k]).flatten(1).numpy() for k in after.state], axis=1)


def _trainer_dp_ok(backend: str) -> bool:
    """The reference trainer's DP check: noise of std sigma C / B on the mean gradient, updates clipped to C."""
    B, C, sigma = 8, 1e-4, 1000.0
    base = {"epochs": B / 96, "batch_size": B, "lr": 1.0, "momentum": 0.0, "seed": 7, "max_grad_norm": C}
    delta = _one_step(TrainConfig(**base, noise_multiplier=sigma), backend)
    stat = float(np.sum((delta / (sigma * C / B)) ** 2))
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], delta.size)
    noise_ok = lo < stat < hi
    clipped = _one_step(TrainConfig(**base, noise_multiplier=0.0), backend)
    # each model's update is lr times a mean of gradients clipped to C: norm <= C
    clip_ok = float(np.linalg.norm(clipped, axis=1).max()) <= C * (1 + 1e-4)
    return noise_ok and clip_ok


@pytest.mark.parametrize("backend", ["local", "loop"])
def test_reference_trainer_dp_check_notices(fault: str, backend: str) -> None:
    assert not _trainer_dp_ok(backend)


@pytest.mark.parametrize("backend", ["local", "loop"])
def test_reference_trainer_dp_check_passes_on_the_intact_mechanism(backend: str) -> None:
    assert _trainer_dp_ok(backend)
