"""Black-box one-run audit of DP-SGD (mislabelled canaries scored by loss, trained via ``make_private``).

Positive controls: noise switched off (the model memorises the IN canaries' wrong labels), and
clipping bypassed when the clipping norm is small against the gradients (C = 0.01: unclipped
gradients then drown the noise sigma C) -> the lower bound exceeds the claim. Negative controls:
the correct implementation in both configurations is not flagged. Synthetic 10-class data, 200
training rows + 200 canaries; each run takes 5-15 s on a loaded 2-core machine. Tolerances checked
on seed 0 (fast suite) and seeds 1-2 (slow suite) when written.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from privlab.audit import AuditSpec, audit_dp_training_blackbox
from privlab.audit.blackbox import blackbox_grid
from privlab.audit.dp_training import audit_summary
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.models import MLP

_W = torch.randn(10, 64, generator=torch.Generator().manual_seed(123))
_CLASSES = tuple(str(i) for i in range(10))
# no_noise: memorisation needs an effective step lr * C of a few units.
NOISE_CFG: dict[str, Any] = {"target_epsilon": 1.0, "max_grad_norm": 1.0, "lr": 5.0, "steps": 200}
# no_clipping: C small against the gradients, a moderate lr so unclipped SGD does not diverge.
CLIP_CFG: dict[str, Any] = {"target_epsilon": 0.5, "max_grad_norm": 0.01, "lr": 0.5, "steps": 100}


def _data(n: int, seed: int) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = ((x.reshape(n, -1) - 0.5) @ _W.T).argmax(1)  # a fixed random linear 10-class rule
    return ArrayDataset(x, y, "synthetic", _CLASSES)


def _run(cfg: dict[str, Any], fault: str | None, seed: int = 0):
    torch.set_num_threads(1)
    spec = AuditSpec(lambda: MLP(64, (128,), 10), _data(200, 0), sample_rate=0.5, seed=seed, **cfg)
    return audit_dp_training_blackbox(spec, canary_pool=_data(200, 1), canaries=200, fault=fault, progress=False)


@pytest.mark.parametrize(("cfg", "fault"), [(NOISE_CFG, "no_noise"), (CLIP_CFG, "no_clipping")])
def test_broken_dp_sgd_is_caught_black_box(cfg: dict[str, Any], fault: str) -> None:
    res = _run(cfg, fault)
    assert res.threat_model == "black_box"
    assert res.claimed_epsilon == pytest.approx(cfg["target_epsilon"], rel=0.02)
    assert res.violated, audit_summary(res)


def test_correct_dp_sgd_is_consistent_black_box() -> None:
    res = _run(NOISE_CFG, None)
    assert not res.violated, audit_summary(res)
    assert res.canaries == 200 and res.scores is not None and res.included is not None
    assert res.scores.shape == (200,) and np.isfinite(res.scores).all()
    d = res.to_dict()
    assert d["threat_model"] == "black_box" and d["audit"]["confidence"] == pytest.approx(0.95)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("cfg", [NOISE_CFG, CLIP_CFG])
def test_correct_dp_sgd_is_consistent_black_box_more_seeds(cfg: dict[str, Any], seed: int) -> None:
    assert not _run(cfg, None, seed).violated


def test_blackbox_grid_guesses_in_only() -> None:
    assert blackbox_grid(1000) == [(10, 0), (50, 0), (100, 0), (250, 0)]
    assert blackbox_grid(50) == [(1, 0), (2, 0), (5, 0), (12, 0)]


def test_invalid_arguments_are_named() -> None:
    spec = AuditSpec(lambda: MLP(64, (8,), 10), _data(50, 0), sample_rate=0.1, steps=2, noise_multiplier=1.0)
    with pytest.raises(InvalidParameterError, match="'canaries' parameter"):
        audit_dp_training_blackbox(spec, canaries=50)
    with pytest.raises(InvalidParameterError, match="'canary_input_scale' parameter"):
        audit_dp_training_blackbox(spec, canaries=10, canary_input_scale=0.0)
    with pytest.raises(InvalidParameterError, match="'fault' parameter"):
        audit_dp_training_blackbox(spec, canaries=10, fault="bogus")


def test_default_pool_holds_out_the_last_rows() -> None:
    spec = AuditSpec(lambda: MLP(64, (8,), 10), _data(60, 0), sample_rate=0.2, steps=3, noise_multiplier=1.0)
    res = audit_dp_training_blackbox(spec, canaries=10, progress=False)
    assert res.canaries == 10 and res.scores is not None and res.scores.shape == (10,)
    assert res.steps == 3 and res.sample_rate == pytest.approx(0.2, abs=0.05)
