"""Shared fixtures: deterministic seeds and a data cache that never downloads."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run slow tests only when asked for (``-m slow``)."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with `make test-slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
