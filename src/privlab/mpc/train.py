"""Private training: logistic regression by mini-batch SGD on secret-shared data.

The data owner (party 1) shares features ``X`` ``[n, d]`` and labels ``y`` ``[n]`` in {0, 1};
weights start at zero (shared, known to nobody after the first step). Each step computes
``p = sigmoid(X_b w + b)`` with the :func:`~privlab.mpc.protocols.nonlinear.sigmoid`
approximation, the gradient ``X_b^T (p - y_b) / B`` and ``w <- w - lr * grad``. Mini-batches
are public (fixed order from ``seed``); only the final weights are revealed, to ``reveal_to``.
Per step: about 50 rounds (two matmuls, one sigmoid, one scaling).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from privlab._validation import check_int, check_real
from privlab.mpc.handshake import agrees_on
from privlab.mpc.party import Party
from privlab.mpc.protocols import arith, nonlinear
from privlab.mpc.sharing import reveal, share


@dataclass(frozen=True)
class LogRegConfig:
    """Hyper-parameters (public): epochs, batch size, learning rate, batch-order seed."""

    epochs: int = 5
    batch_size: int = 32
    lr: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs", "LogRegConfig", low=1)
        check_int(self.batch_size, "batch_size", "LogRegConfig", low=1)
        check_real(self.lr, "lr", "LogRegConfig", low=0.0, low_open=True)
        check_int(self.seed, "seed", "LogRegConfig", low=0, high=2**63 - 1)


@dataclass(frozen=True)
class LogRegModel:
    """Revealed weights ``[d]`` and bias of a privately trained logistic regression."""

    weight: torch.Tensor
    bias: float

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Plaintext probabilities for ``x`` ``[n, d]``."""
        return torch.sigmoid(x.double() @ self.weight + self.bias)


def _public_arguments(
    x: Any, y: Any, shape: tuple[int, int], cfg: LogRegConfig | None = None, *rest: Any
) -> dict[str, Any]:
    """What both parties must agree on: the data shape and the hyper-parameters (the batch order's
    seed included: parties with two orders would add rows of different examples)."""
    return {"shape": list(shape), "config": dataclasses.asdict(cfg or LogRegConfig()), "options": list(rest)}


@agrees_on(_public_arguments)
def train_logreg(
    party: Party,
    x: torch.Tensor | None,
    y: torch.Tensor | None,
    shape: tuple[int, int],
    cfg: LogRegConfig | None = None,
    *,
    data_owner: int = 1,
    reveal_to: int | None = None,
) -> LogRegModel | None:
    """Train on shares; ``x``/``y`` are given on the data owner only, ``shape = (n, d)`` is public.

    Returns the model on the parties that learn it (``reveal_to=None``: both), else ``None``.
    """
    cfg = cfg or LogRegConfig()
    n, d = shape
    xs = share(party, data_owner, x, (n, d))
    ys = share(party, data_owner, None if y is None else y.double(), (n,))
    w = torch.zeros(d, 1, dtype=torch.int64)
    b = torch.zeros(1, dtype=torch.int64)
    order = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=order)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            xb, yb = xs[idx], ys[idx]
            with party.counter.scope("forward"):
                z = arith.matmul(party, xb, w).squeeze(-1) + b
                p = nonlinear.sigmoid(party, z)
            with party.counter.scope("backward"):
                err = p - yb  # [B]
                grad = arith.matmul(party, xb.t(), err.unsqueeze(-1))  # [d, 1]
                both = torch.cat([grad.reshape(-1), err.sum().reshape(1)])
                step = arith.mul_public(party, both, -cfg.lr / len(idx))
                w = w + step[:d].reshape(d, 1)
                b = b + step[d:]
    wv = reveal(party, w.reshape(-1), to=reveal_to)
    bv = reveal(party, b, to=reveal_to)
    if wv is None or bv is None:
        return None
    return LogRegModel(wv, float(bv[0]))
