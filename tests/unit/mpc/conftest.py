"""Fixtures for the MPC tests: evaluate a protocol on shared inputs and reveal the result."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from privlab.mpc.config import MPCConfig
from privlab.mpc.launch import RunResult, run_local
from privlab.mpc.tasks import eval_task

Evaluator = Callable[..., tuple[torch.Tensor, RunResult]]


def _shared_eval(fn: Callable[..., torch.Tensor], *xs: torch.Tensor, decoded: bool = True,
                 config: MPCConfig | None = None) -> tuple[torch.Tensor, RunResult]:
    """Share ``xs`` (alternating owners), run ``fn(party, *shares)`` under the in-process
    transport, reveal to both; ``run.stats.per_op['op']`` is ``fn``'s own traffic."""
    args = (fn, list(xs), 1, decoded)
    res = run_local(eval_task, (args, args), config)
    out0, out1 = res.outputs
    if not torch.equal(out0, out1):
        raise AssertionError("the parties revealed different values")
    return out0, res


@pytest.fixture
def shared_eval() -> Evaluator:
    return _shared_eval


@pytest.fixture
def rand() -> Callable[..., torch.Tensor]:
    """``rand(shape, scale, seed)``: float64 normal values times ``scale``, reproducibly."""

    def make(shape: tuple[int, ...], scale: float = 1.0, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(shape, generator=g, dtype=torch.float64) * scale

    return make
