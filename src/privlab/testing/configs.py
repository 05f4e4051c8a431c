"""A tiny pipeline configuration (MNIST, 300 examples, two targets, two references): a smoke test of
``privlab run`` that finishes in seconds, used by the pipeline's own tests."""

from __future__ import annotations

import copy
from typing import Any

_TINY_RUN: dict[str, Any] = {
    "seed": 0,
    "data": {"dataset": "mnist", "population": 300, "test_size": 300},
    "targets": [
        {"name": "plain", "train": {"epochs": 3, "batch_size": 32, "lr": 0.05}},
        {
            "name": "dp",
            "train": {"epochs": 1, "batch_size": 50, "lr": 1.0, "momentum": 0.0},
            "dp": {"target_epsilon": 8.0},
        },
    ],
    "attack": {
        "reference_models": 2,
        "attacks": ["loss", "lira_offline", "rmia_offline"],
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.05},
    },
    "audit": {"canaries": 40},
}


def tiny_run_config(name: str = "tiny") -> dict[str, Any]:
    """A fresh copy of the tiny run configuration (a plain dict for ``config_from_dict``), named ``name``."""
    return {"name": name, **copy.deepcopy(_TINY_RUN)}
