"""Private logistic regression reaches plaintext accuracy on a synthetic task."""

from __future__ import annotations

import pytest
import torch

from privlab.errors import InvalidParameterError
from privlab.mpc.launch import run_local
from privlab.mpc.train import LogRegConfig, train_logreg


def _data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = ((x @ w + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)) > 0).double()
    return x, y


def _plaintext_sgd(x: torch.Tensor, y: torch.Tensor, cfg: LogRegConfig) -> torch.Tensor:
    """The naive reference: the same SGD in float64."""
    n, d = x.shape
    w, b = torch.zeros(d, dtype=torch.float64), 0.0
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, cfg.batch_size):
            i = perm[s : s + cfg.batch_size]
            err = torch.sigmoid(x[i] @ w + b) - y[i]
            w = w - cfg.lr * (x[i].t() @ err) / len(i)
            b = b - cfg.lr * float(err.sum()) / len(i)
    return torch.cat([w, torch.tensor([b], dtype=torch.float64)])


def test_private_logreg_matches_plaintext_sgd() -> None:
    x, y = _data(200, 4, seed=0)
    cfg = LogRegConfig(epochs=3, batch_size=40, lr=0.5)
    res = run_local(lambda p, a, b: train_logreg(p, a, b, (200, 4), cfg), ((None, None), (x, y)))
    model = res.outputs[0]
    assert model is not None and res.outputs[1] is not None
    acc = float(((model.predict_proba(x) > 0.5).double() == y).double().mean())
    ref = _plaintext_sgd(x, y, cfg)
    ref_acc = float((((x @ ref[:-1] + ref[-1]) > 0).double() == y).double().mean())
    assert acc >= ref_acc - 0.02
    assert acc > 0.85  # chance is ~0.5
    assert torch.allclose(torch.cat([model.weight, torch.tensor([model.bias])]), ref, atol=1e-2)


def test_reveal_to_data_owner_only() -> None:
    x, y = _data(20, 2, seed=1)
    cfg = LogRegConfig(epochs=1, batch_size=20)
    res = run_local(lambda p, a, b: train_logreg(p, a, b, (20, 2), cfg, reveal_to=1),
                    ((None, None), (x, y)))
    assert res.outputs[0] is None and res.outputs[1] is not None


def test_config_is_validated() -> None:
    with pytest.raises(InvalidParameterError, match="'lr' parameter of LogRegConfig"):
        LogRegConfig(lr=0.0)
