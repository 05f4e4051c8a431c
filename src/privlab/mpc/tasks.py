"""Importable party functions (a spawned process can only run what it can import)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from privlab._validation import check_int
from privlab.mpc.handshake import agrees_on
from privlab.mpc.party import Party
from privlab.mpc.sharing import reveal, share


def resolve(spec: str) -> Callable[..., torch.Tensor]:
    """``'package.module:function'`` to the function."""
    mod, _, name = spec.partition(":")
    fn: Callable[..., torch.Tensor] = getattr(importlib.import_module(mod), name)
    return fn


def _eval_arguments(fn: Any, xs: list[torch.Tensor], repeat: int = 1, decoded: bool = True) -> dict[str, Any]:
    name = fn if isinstance(fn, str) else f"{fn.__module__}:{fn.__qualname__}"
    return {"fn": name, "shapes": [list(x.shape) for x in xs], "repeat": repeat, "decoded": decoded}


@agrees_on(_eval_arguments)
def eval_task(
    party: Party, fn: str | Callable[..., torch.Tensor], xs: list[torch.Tensor], repeat: int = 1, decoded: bool = True
) -> torch.Tensor | None:
    """Share ``xs[i]`` from party ``i % 2``, apply ``fn(party, *shares)`` ``repeat`` times to the
    same inputs (a long computation for failure tests), reveal the last result to both."""
    check_int(repeat, "repeat", "eval_task", low=1)  # 0 would reveal party 0's own share of its input
    f = resolve(fn) if isinstance(fn, str) else fn
    shares = [share(party, i % 2, x if party.rank == i % 2 else None, x.shape) for i, x in enumerate(xs)]
    out = shares[0]
    with party.counter.scope("op"):
        for _ in range(repeat):
            out = f(party, *shares)
    return reveal(party, out, decoded=decoded)
