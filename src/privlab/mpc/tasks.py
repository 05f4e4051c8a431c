"""Importable party functions (a spawned process can only run what it can import)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from privlab.mpc.party import Party
from privlab.mpc.sharing import reveal, share


def resolve(spec: str) -> Callable[..., torch.Tensor]:
    """``'package.module:function'`` to the function."""
    mod, _, name = spec.partition(":")
    fn: Callable[..., torch.Tensor] = getattr(importlib.import_module(mod), name)
    return fn


def eval_task(
    party: Party, fn: str | Callable[..., torch.Tensor], xs: list[torch.Tensor], repeat: int = 1, decoded: bool = True
) -> torch.Tensor | None:
    """Share ``xs[i]`` from party ``i % 2``, apply ``fn(party, *shares)`` ``repeat`` times to the
    same inputs (a long computation for failure tests), reveal the last result to both."""
    f = resolve(fn) if isinstance(fn, str) else fn
    shares = [share(party, i % 2, x if party.rank == i % 2 else None, x.shape) for i, x in enumerate(xs)]
    out = shares[0]
    with party.counter.scope("op"):
        for _ in range(repeat):
            out = f(party, *shares)
    return reveal(party, out, decoded=decoded)
