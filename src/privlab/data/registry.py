"""Datasets by name, with where each comes from and whether it is available on this machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privlab._validation import check_choice
from privlab.data.adult import ADULT_HINT, load_adult
from privlab.data.dataset import ArrayDataset
from privlab.data.text import SHAKESPEARE_HINT, _tarball, load_shakespeare
from privlab.data.vision import FASHION_HINT, MNIST_HINT, load_fashion_mnist, load_mnist
from privlab.errors import DataUnavailableError


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Callable[..., Any]
    description: str
    source: str


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", load_mnist, "MNIST digits, 60k train + 10k test, 1x28x28", MNIST_HINT),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", load_fashion_mnist, "Fashion-MNIST, 60k train + 10k test, 1x28x28", FASHION_HINT
    ),
    "adult": DatasetInfo("adult", load_adult, "Adult census income, 32,561 + 16,281 rows, 105 features", ADULT_HINT),
    "shakespeare": DatasetInfo(
        "shakespeare", load_shakespeare, "Shakespeare's works, ~4.6M characters, char-level", SHAKESPEARE_HINT
    ),
}


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None) -> ArrayDataset:
    """Load a classification dataset ("mnist", "fashion_mnist", "adult") by name."""
    check_choice(name, "name", "load_dataset", [n for n in DATASETS if n != "shakespeare"])
    loaded: ArrayDataset = DATASETS[name].loader(split=split, data_dir=data_dir)
    return loaded


def availability(data_dir: str | Path | None = None) -> dict[str, str | None]:
    """For each dataset, ``None`` if it loads here, else the error message saying what provides it."""
    out: dict[str, str | None] = {}
    for name, info in DATASETS.items():
        try:
            if name == "shakespeare":
                _tarball(data_dir)
            else:
                info.loader(split="test", data_dir=data_dir)
            out[name] = None
        except DataUnavailableError as exc:
            out[name] = str(exc)
    return out
