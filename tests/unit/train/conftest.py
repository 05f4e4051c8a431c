"""Small synthetic data for fast training tests (no dataset files needed)."""

from __future__ import annotations

import pytest
import torch

from privlab.data import ArrayDataset


@pytest.fixture(scope="session")
def tiny_data() -> ArrayDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 4, 4, generator=gen)
    y = (x.flatten(1).sum(1) > 8).long() + 2 * (x[:, 0, 0, 0] > 0.5).long()
    return ArrayDataset(x, y, name="tiny")
