"""The evaluation flags a model that still holds the forget set and clears one retrained without it.

Positive control: the original model (no unlearning). Negative control: retraining (a second,
independently seeded retrain for PrivLeak; retrained shadow models for U-LiRA). Tolerances were
checked on seeds 0-2 of the data draw.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from privlab.data import ArrayDataset, load_adult, load_mnist
from privlab.models import MLP
from privlab.train import TrainConfig, init_model
from privlab.unlearn import UnlearnConfig, forget_split
from privlab.unlearn.evaluation import choose_forget, evaluate, privleak, scaling, score_model, sequence
from privlab.unlearn.ulira import ULiRAConfig, ulira


def _check_controls(
    train: ArrayDataset, test: ArrayDataset, hidden: tuple[int, ...], cfg: UnlearnConfig, fraction: float, shadows: int
) -> None:
    d, c = int(np.prod(train.x.shape[1:])), train.num_classes

    def factory() -> MLP:
        return MLP(in_features=d, hidden=hidden, num_classes=c)

    idx = choose_forget(train, fraction, seed=1)
    ev = evaluate("retrain", factory, train, idx, test, cfg, n_bootstrap=100)
    # PrivLeak: the original leaks, an independent retraining does not
    assert ev.privleak_original > 0.05
    split = forget_split(train, idx)
    other = get_retrained(factory, split.retain, replace(cfg.train, seed=cfg.train.seed + 17))
    s2 = score_model(other, split.forget, split.retain, test, n_bootstrap=100)
    assert abs(privleak(s2.mia_auc, ev.retrained.mia_auc)) < 0.04
    assert ev.privleak == pytest.approx(0.0, abs=0.04)
    # U-LiRA: TPR at 1% FPR well above 1% for the original, at chance for retraining
    ucfg = ULiRAConfig(shadows=shadows, n_bootstrap=100)
    pos = ulira(None, factory, train, idx, cfg, ucfg)
    neg = ulira("retrain", factory, train, idx, cfg, ucfg)
    print(f"U-LiRA TPR@1%: original {pos.metrics.tpr_at_fpr[0.01]:.3f}, retrain {neg.metrics.tpr_at_fpr[0.01]:.3f}")
    assert pos.metrics.tpr_at_fpr[0.01] > 0.03 and pos.metrics.tpr_at_fpr_ci[0.01][0] > 0.01
    assert neg.metrics.tpr_at_fpr[0.01] < 0.03 and neg.metrics.tpr_at_fpr_ci[0.01][0] <= 0.01
    assert abs(neg.metrics.auc - 0.5) < 0.05 and pos.metrics.auc > 0.55


def get_retrained(factory: object, data: ArrayDataset, tc: TrainConfig) -> MLP:
    from privlab.train import train_model

    return train_model(init_model(factory, tc.seed), data, tc)  # type: ignore[return-value]


def test_controls_mnist_small() -> None:
    train, test = load_mnist("train").head(1000), load_mnist("test").head(1000)
    cfg = UnlearnConfig(train=TrainConfig(epochs=20, batch_size=32, lr=0.05))
    _check_controls(train, test, (64,), cfg, 0.1, 8)


@pytest.mark.slow
def test_controls_mnist_full() -> None:
    train, test = load_mnist("train").head(4000), load_mnist("test").head(2000)
    cfg = UnlearnConfig(train=TrainConfig(epochs=20, batch_size=64, lr=0.05))
    _check_controls(train, test, (128,), cfg, 0.05, 16)


@pytest.mark.slow
def test_controls_adult() -> None:
    train, test = load_adult("train").head(1000), load_adult("test").head(2000)
    cfg = UnlearnConfig(train=TrainConfig(epochs=40, batch_size=32, lr=0.05))
    _check_controls(train, test, (256,), cfg, 0.1, 16)


def test_results_are_json_and_sequence_and_scaling_have_their_shape(mnist_small: ArrayDataset) -> None:
    test = load_mnist("test").head(200)
    cfg = UnlearnConfig(train=TrainConfig(epochs=2, batch_size=32, lr=0.05), epochs=1)

    def factory() -> MLP:
        return MLP(hidden=(16,))

    ev = evaluate("finetune", factory, mnist_small, choose_forget(mnist_small, 0.05), test, cfg, n_bootstrap=10)
    d = json.loads(json.dumps(ev.to_dict()))
    assert set(d) >= {"memorisation", "leakage", "utility", "cost"}
    assert d["cost"]["fraction_retrained"] == 0.0 and d["cost"]["time_ratio"] > 0
    assert d["n_forget"] == 20 and d["leakage"]["ulira"] is None
    steps = sequence("finetune", factory, mnist_small, choose_forget(mnist_small, 0.05), test, cfg, requests=4)
    assert [s.request for s in steps] == [1, 2, 3, 4] and [s.n_removed for s in steps] == [5, 10, 15, 20]
    assert all(0 <= s.test_accuracy <= 1 for s in steps) and json.dumps([s.to_dict() for s in steps])
    sc = scaling("gradient_ascent", factory, mnist_small, test, cfg, fractions=(0.01, 0.05), kind="class")
    assert [e.n_forget for e in sc] == [4, 20] and all(e.forget_kind == "class" for e in sc)
    cls_idx = choose_forget(mnist_small, 0.05, "class", cls=3)
    assert (mnist_small.y[cls_idx] == 3).all()
