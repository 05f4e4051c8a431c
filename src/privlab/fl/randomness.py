"""Where a federated run's randomness comes from: seeded (reproducible) or the OS CSPRNG (``secure_rng``).

Two kinds of randomness decide the privacy guarantee: the DP noise (client-side in distributed DP,
server-side in central DP, and the clipped-count noise of adaptive clipping) and the choice of the
clients sampled each round (sampling amplification assumes the adversary does not know who was
sampled). With ``FedConfig(secure_rng=False)`` (the default, as in DP-SGD's ``make_private``) both are
derived from ``cfg.seed``: a run is reproducible, and therefore *not private against anyone who
knows the seed* (the report publishes the config): they regenerate the noise and subtract it.
With ``secure_rng=True`` the noise is :func:`privlab.dp.noise.secure_standard_normal` (``os.urandom``
and Box-Muller) and the sampled clients are a fresh ``secrets.SystemRandom`` permutation of the
nodes every round; two runs of the same config then differ.

Derived seeds (local training, seeded noise) come from :func:`privlab.dp.noise.derive_seed`: the
first 8 bytes of SHA-256 of the seed and the labels that name the use, so distinct (seed, round,
client, purpose) never collide by arithmetic (the former ``seed * 1_000_003 + round * 10_007 +
client`` did for >= 10,007 clients).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

from privlab.dp.noise import secure_standard_normal
from privlab.errors import InvalidParameterError

T = TypeVar("T")


class NoiseSource:
    """Standard normals for DP noise: from a seeded generator, or from the OS CSPRNG when ``secure``.

    ``seed`` is only used when ``secure`` is False (it must then be given).
    """

    def __init__(self, secure: bool, seed: int | None = None) -> None:
        self.secure = bool(secure)
        if not self.secure and seed is None:
            raise InvalidParameterError(
                "The 'seed' parameter of NoiseSource must be an int when secure=False. Got None instead."
            )
        self._gen = None if self.secure else torch.Generator().manual_seed(int(seed))  # type: ignore[arg-type]

    def normal(self, shape: Sequence[int] | torch.Size, std: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``N(0, std^2)`` of ``shape`` in ``dtype`` (float64 draws for the secure source, then cast)."""
        shape = torch.Size(shape)
        if self.secure:
            return std * secure_standard_normal(shape, dtype=dtype)
        return std * torch.randn(shape, generator=self._gen, dtype=dtype)

    def normal_like(self, array: np.ndarray, std: float) -> np.ndarray:
        """``N(0, std^2)`` with ``array``'s shape and dtype, as numpy (Flower's arrays)."""
        noise = self.normal(array.shape, std, dtype=torch.float64).numpy()
        return noise.astype(array.dtype, copy=False)


def secure_shuffled(items: Sequence[T]) -> list[T]:
    """``items`` in a uniformly random order drawn from the OS CSPRNG (``secrets.SystemRandom``).

    Flower samples clients with ``random.sample`` (Mersenne Twister, predictable from its seed or
    its outputs); positions chosen by it in a freshly, secretly permuted list are a uniform sample
    that no one can predict without the permutation.
    """
    out = list(items)
    secrets.SystemRandom().shuffle(out)
    return out
