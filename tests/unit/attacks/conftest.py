"""Fixtures: synthetic reference/target signals with and without a membership effect."""

from __future__ import annotations

import pytest

from privlab.attacks.synthetic import synthetic_signals as synthetic


@pytest.fixture(scope="session")
def leaky():
    return synthetic(effect=2.0)


@pytest.fixture(scope="session")
def silent():
    return synthetic(effect=0.0, seed=1)
