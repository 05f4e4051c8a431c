"""Fixtures: synthetic reference/target signals with and without a membership effect."""

from __future__ import annotations

import numpy as np
import pytest

from privlab.attacks import Signals


def synthetic(n: int = 400, k: int = 16, effect: float = 2.0, seed: int = 0, classes: int = 4):
    """Logits where the true-label logit of example n in model k is ``d_n + effect * IN + noise``.

    Returns reference Signals (k, n), reference mask, target Signals (1, n), target membership (n,).
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    difficulty = rng.normal(0, 2, n)
    mask = rng.random((k + 1, n)) < 0.5

    def logits(in_row: np.ndarray) -> np.ndarray:
        z = rng.normal(0, 1, (n, classes))
        z[np.arange(n), labels] += difficulty + effect * in_row + rng.normal(0, 0.5, n)
        return z

    all_logits = np.stack([logits(mask[j]) for j in range(k + 1)])
    return (Signals.from_logits(all_logits[1:], labels), mask[1:], Signals.from_logits(all_logits[:1], labels), mask[0])


@pytest.fixture(scope="session")
def leaky():
    return synthetic(effect=2.0)


@pytest.fixture(scope="session")
def silent():
    return synthetic(effect=0.0, seed=1)
