"""Small real-data fixtures for the unlearning tests (MNIST and Adult heads)."""

from __future__ import annotations

import pytest
import torch

from privlab.data import ArrayDataset, load_adult, load_mnist


@pytest.fixture(scope="session")
def mnist_small() -> ArrayDataset:
    return load_mnist("train").head(400)


@pytest.fixture(scope="session")
def adult_small() -> ArrayDataset:
    """400 Adult rows with every feature scaled to unit row norm (Guo et al.'s preprocessing)."""
    d = load_adult("train").head(400)
    x = d.x / d.x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return ArrayDataset(x.to(torch.float32), d.y, d.name, d.classes)
