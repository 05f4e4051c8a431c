"""Signals against naive formulas; all model containers give the same signals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from privlab.attacks import AUGMENTATIONS, Signals, compute_signals
from privlab.data import ArrayDataset, membership_mask
from privlab.errors import CorruptArtifactError, InvalidParameterError
from privlab.models import MLP
from privlab.train import TrainConfig, train_ensemble


def test_from_logits_matches_naive_formulas():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (2, 7, 5))
    y = rng.integers(0, 5, 7)
    s = Signals.from_logits(z, y)
    for k in range(2):
        for n in range(7):
            p = np.exp(z[k, n]) / np.exp(z[k, n]).sum()
            assert s.prob[k, n] == pytest.approx(p[y[n]])
            assert s.loss[k, n] == pytest.approx(-np.log(p[y[n]]))
            assert s.confidence[k, n] == pytest.approx(np.log(p[y[n]] / (1 - p[y[n]])))
    ce = F.cross_entropy(torch.tensor(z[0]), torch.tensor(y), reduction="none").numpy()
    np.testing.assert_allclose(s.loss[0], ce, rtol=1e-10)


def test_confidence_is_stable_when_p_rounds_to_one():
    z = np.array([[[60.0, 0.0, -5.0]]])
    s = Signals.from_logits(z, np.array([0]))
    # log(p/(1-p)) = 60 - logsumexp([0, -5]) exactly; the naive form gives inf.
    assert s.confidence[0, 0] == pytest.approx(60 - np.log(1 + np.exp(-5)))
    assert np.isfinite(s.loss).all()


def test_views_are_averaged():
    z = np.random.default_rng(1).normal(size=(1, 3, 2, 4))  # (K, N, V, C)
    y = np.array([0, 1, 2])
    s = Signals.from_logits(z, y)
    per_view = [Signals.from_logits(z[:, :, v], y) for v in range(2)]
    np.testing.assert_allclose(s.confidence, (per_view[0].confidence + per_view[1].confidence) / 2)
    assert s.n_views == 2 and s.logits.shape == (1, 3, 4)
    with pytest.raises(InvalidParameterError, match=r"'logits' parameter of Signals\.from_logits"):
        Signals.from_logits(np.zeros((2, 4)), y)


def test_containers_agree_and_augment():
    gen = torch.Generator().manual_seed(0)
    data = ArrayDataset(torch.rand(20, 1, 28, 28, generator=gen), torch.randint(0, 10, (20,), generator=gen))
    ens = train_ensemble(MLP, data, membership_mask(3, 20, seed=0), TrainConfig(epochs=1, batch_size=4), progress=False)
    a = compute_signals(ens, data)
    b = compute_signals(ens.models, data)
    c = np.concatenate([compute_signals(m, data).loss for m in ens.models])
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.loss, c, rtol=1e-5, atol=1e-6)
    aug = compute_signals(ens.model(0), data, augment=True, batch_size=7)
    assert aug.n_views == len(AUGMENTATIONS) and aug.loss.shape == (1, 20)
    flip = compute_signals(ens.model(0), data, augment=["hflip"])
    naive = F.cross_entropy(ens.model(0)(torch.flip(data.x, dims=(-1,))), data.y, reduction="none")
    np.testing.assert_allclose(flip.loss[0], naive.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidParameterError, match="'augment'"):
        compute_signals(ens.model(0), data, augment=["rotate"])
    with pytest.raises(InvalidParameterError, match="'model_or_models'"):
        compute_signals("model", data)


def test_save_load_roundtrip(tmp_path):
    s = Signals.from_logits(np.random.default_rng(0).normal(size=(2, 5, 3)), np.array([0, 1, 2, 0, 1]))
    s.save(tmp_path / "sig.npz")
    back = Signals.load(tmp_path / "sig.npz")
    for f in ("logits", "labels", "loss", "prob", "confidence"):
        np.testing.assert_array_equal(getattr(back, f), getattr(s, f))
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(CorruptArtifactError):
        Signals.load(tmp_path / "other.npz")


def test_augmentation_refuses_flat_inputs():
    import torch

    from privlab.attacks.signals import compute_signals
    from privlab.data import ArrayDataset
    from privlab.errors import InvalidParameterError

    model = torch.nn.Linear(12, 3)
    flat = ArrayDataset(torch.randn(8, 12), torch.randint(0, 3, (8,)), "flat", ("a", "b", "c"))
    with pytest.raises(InvalidParameterError, match=r"'augment' parameter of compute_signals .* image-shaped"):
        compute_signals(model, flat, augment=True)
    assert compute_signals(model, flat, augment=False).n_examples == 8  # control: no views, no refusal
