"""Slow, obviously-correct references for the DP tests: one backward pass per example."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


def reference_per_sample_grads(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """{name: (B, *shape)} by a Python loop of single-example backward passes."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in params}
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, p in params.items():
            rows[n].append(torch.zeros_like(p) if p.grad is None else p.grad.detach().clone())
    model.zero_grad(set_to_none=True)
    return {n: torch.stack(r) for n, r in rows.items()}


def reference_clipped_sum(per_sample: dict[str, torch.Tensor], C: float, mode: str = "flat") -> dict[str, torch.Tensor]:
    """Loop over examples: clip each one's gradient (all params, or each param to C/sqrt(K)) and add."""
    names = list(per_sample)
    B = per_sample[names[0]].shape[0]
    out = {n: torch.zeros_like(per_sample[n][0]) for n in names}
    for i in range(B):
        if mode == "flat":
            norm = float(sum(per_sample[n][i].pow(2).sum() for n in names)) ** 0.5
            for n in names:
                out[n] += per_sample[n][i] * min(1.0, C / (norm + 1e-6))
        else:
            c = C / len(names) ** 0.5
            for n in names:
                norm = float(per_sample[n][i].norm())
                out[n] += per_sample[n][i] * min(1.0, c / (norm + 1e-6))
    return out


def assert_close_dicts(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-4, rtol: float = 1e-4
) -> None:
    assert set(a) == set(b), (set(a), set(b))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=rtol, msg=lambda m, k=k: f"{k}: {m}")


class _Reference:
    per_sample_grads = staticmethod(reference_per_sample_grads)
    clipped_sum = staticmethod(reference_clipped_sum)
    assert_close_dicts = staticmethod(assert_close_dicts)


@pytest.fixture(scope="session")
def ref() -> _Reference:
    """The slow references, as a fixture (test directories are not packages)."""
    return _Reference()
