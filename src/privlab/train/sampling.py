"""Seeds and minibatch index streams shared by the plain loop and the vectorised ensemble.

Both training paths consume exactly the same random numbers, which is what makes "train K models
at once" and "train them one by one" give the same parameters:

* model ``k`` of an ensemble with base seed ``s`` uses seed ``model_seed(s, k)`` for both its
  initialisation (the CPU generator seeded inside a forked RNG, as ``torch.manual_seed`` seeds it)
  and its example order;
* the example order is a stream of fresh random permutations of ``range(n)`` drawn from a
  ``torch.Generator`` seeded with that seed, cut into ``steps`` batches of ``batch_size``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from privlab.errors import InvalidParameterError


def model_seed(base_seed: int, index: int) -> int:
    """Seed of model ``index`` in an ensemble with ``base_seed`` (independent streams via SeedSequence)."""
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1, dtype=np.uint32)[0])


def noise_generator(seed: int) -> torch.Generator:
    """The generator of DP-SGD-style noise for the model with ``seed`` (a stream apart from its batches)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 1]).generate_state(1, dtype=np.uint32)[0]))


def num_steps(n: int, epochs: float, batch_size: int) -> int:
    """``ceil(epochs * n / batch_size)``, at least 1: the number of steps a model with ``n`` examples takes."""
    return max(1, math.ceil(epochs * n / batch_size))


def index_stream(n: int, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """(steps, batch_size) int64 positions in ``range(n)``: concatenated seeded permutations, cut in batches."""
    gen = torch.Generator().manual_seed(seed)
    total = steps * batch_size
    n_perms = math.ceil(total / n)
    perms = [torch.randperm(n, generator=gen) for _ in range(n_perms)]
    return torch.cat(perms)[:total].reshape(steps, batch_size)


def init_model(factory: object, seed: int) -> torch.nn.Module:
    """Call ``factory()`` with the global torch RNG seeded to ``seed``, without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only (what fork_rng restores): ``torch.manual_seed`` would also seed (and, on a
        # CPU-only build, queue lazy seeding calls with a captured stack for) every accelerator, ~1 ms per model.
        torch.default_generator.manual_seed(seed)
        model = factory()  # type: ignore[operator]
    if not isinstance(model, torch.nn.Module):
        raise InvalidParameterError(
            f"The 'model_factory' parameter of train_ensemble must return a torch.nn.Module. Got {type(model)} instead."
        )
    return model
