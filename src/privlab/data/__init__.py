"""Offline datasets, membership splits and canaries.

Loaders return an :class:`ArrayDataset` (tensors ``x``, ``y``); a missing source raises
:class:`privlab.errors.DataUnavailableError` naming the package or path that provides it. Data is
cached under ``$PRIVLAB_DATA_DIR`` (default ``~/.cache/privlab``) or a ``data_dir`` argument.
"""

from privlab.data._paths import ENV_DATA_DIR, cache_dir
from privlab.data.adult import load_adult
from privlab.data.canaries import (
    ClassifierCanaries,
    SecretCanaries,
    mislabelled_canaries,
    secret_canaries,
)
from privlab.data.dataset import ArrayDataset
from privlab.data.membership import membership_mask
from privlab.data.registry import DATASETS, availability, load_dataset
from privlab.data.text import CharCorpus, fetch_shakespeare, load_shakespeare, load_shakespeare_text
from privlab.data.vision import load_fashion_mnist, load_mnist

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "ArrayDataset",
    "CharCorpus",
    "ClassifierCanaries",
    "SecretCanaries",
    "availability",
    "cache_dir",
    "fetch_shakespeare",
    "load_adult",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "load_shakespeare",
    "load_shakespeare_text",
    "membership_mask",
    "mislabelled_canaries",
    "secret_canaries",
]
