"""Splitting a dataset across federated clients: IID, non-IID (Dirichlet over labels), by user.

* ``iid``: a uniformly random permutation cut into ``num_clients`` near-equal parts.
* ``dirichlet``: for each class ``c`` draw client proportions ``p_c ~ Dir(alpha * 1_K)`` and deal
  that class's examples out in those proportions (Hsu, Qi & Brown 2019, "Measuring the Effects of
  Non-Identical Data Distribution for Federated Visual Classification"). Small ``alpha`` (0.1) gives
  clients one or two classes; large ``alpha`` (100) approaches IID. Clients left with fewer than
  ``min_size`` examples trigger a redraw (bounded), the usual practice in FL benchmarks.
* ``by_user``: one client per distinct user id (e.g. a speaker of a play), the natural unit of
  user-level privacy: every example of a user lives on one client.

Every function returns a list of ``num_clients`` int64 index tensors that together cover each
example exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from privlab._validation import check_choice, check_int, check_real
from privlab.errors import InvalidParameterError

PARTITIONS = ("iid", "dirichlet")


def iid_partition(n: int, num_clients: int, seed: int = 0) -> list[torch.Tensor]:
    """A random permutation of ``range(n)`` cut into ``num_clients`` parts of size ``n // K`` or one more."""
    check_int(n, "n", "iid_partition", low=1)
    k = check_int(num_clients, "num_clients", "iid_partition", low=1, high=n)
    perm = np.random.default_rng(seed).permutation(n)
    return [torch.as_tensor(p, dtype=torch.int64) for p in np.array_split(perm, k)]


def dirichlet_partition(
    labels: torch.Tensor | Sequence[int],
    num_clients: int,
    alpha: float,
    seed: int = 0,
    *,
    min_size: int = 1,
    max_tries: int = 100,
) -> list[torch.Tensor]:
    """Label-skewed split: class ``c``'s examples dealt out with proportions ``p_c ~ Dir(alpha)``.

    Raises :class:`InvalidParameterError` when no draw in ``max_tries`` gives every client at least
    ``min_size`` examples (lower ``num_clients`` or raise ``alpha``).
    """
    y = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
    owner = "dirichlet_partition"
    k = check_int(num_clients, "num_clients", owner, low=1, high=max(len(y), 1))
    a = check_real(alpha, "alpha", owner, low=0.0, low_open=True)
    check_int(min_size, "min_size", owner, low=0)
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    for _ in range(check_int(max_tries, "max_tries", owner, low=1)):
        parts: list[list[np.ndarray]] = [[] for _ in range(k)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(y == c))
            p = rng.dirichlet(np.full(k, a))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
            for j, chunk in enumerate(np.split(idx, cuts)):
                parts[j].append(chunk)
        out = [np.concatenate(p) if p else np.empty(0, np.int64) for p in parts]
        if min(len(o) for o in out) >= min_size:
            return [torch.as_tensor(rng.permutation(o), dtype=torch.int64) for o in out]
    raise InvalidParameterError(
        f"The 'alpha' parameter of dirichlet_partition gave a client fewer than {min_size} examples in "
        f"{max_tries} draws (num_clients={k}, n={len(y)}). Got alpha={a} instead; raise alpha or lower num_clients."
    )


def user_partition(user_ids: Sequence[int] | torch.Tensor) -> list[torch.Tensor]:
    """One client per distinct user id, in increasing id order: all of a user's rows on one client."""
    u = np.asarray(torch.as_tensor(user_ids).cpu(), dtype=np.int64)
    if u.size == 0:
        raise InvalidParameterError("The 'user_ids' parameter of user_partition must be non-empty. Got 0 ids instead.")
    return [torch.as_tensor(np.flatnonzero(u == v), dtype=torch.int64) for v in np.unique(u)]


def partition(
    labels: torch.Tensor, num_clients: int, scheme: str = "iid", alpha: float = 0.5, seed: int = 0
) -> list[torch.Tensor]:
    """Dispatch to :func:`iid_partition` or :func:`dirichlet_partition` by name."""
    check_choice(scheme, "scheme", "partition", PARTITIONS)
    if scheme == "iid":
        return iid_partition(len(labels), num_clients, seed)
    return dirichlet_partition(labels, num_clients, alpha, seed)
