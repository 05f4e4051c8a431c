"""Secure random numbers for DP-SGD's noise and sampling (the noise step is :mod:`privlab.dp.mechanism`).

The Gaussian mechanism adds ``N(0, (sigma * C)^2 I)`` to the sum of clipped gradients, whose L2
sensitivity is C (Abadi et al. 2016, Alg. 1; Dwork & Roth 2014, Thm. A.1 for the mechanism,
Mironov 2017 / Balle et al. 2018 for its RDP / PLD accounting).

Secure generator (``secure=True``): uniform bits come from the operating system's CSPRNG
(``os.urandom``) and are turned into normals by the Box-Muller transform in float64. PyTorch's default
generator (Mersenne Twister / Philox) is predictable from its outputs and seed, so an adversary who
can reconstruct the seed could subtract the noise.

Floating-point caveat (Mironov 2012, "On Significance of the Least Significant Bits for
Differential Privacy"): the formal guarantee is for real-valued Gaussian noise. Floating-point
samples take only some values, and the set of reachable outputs depends on the un-noised value,
which can leak it in principle (Mironov showed this for the Laplace mechanism; Jin et al. 2022 and
Haney et al. 2022 extend it to Gaussian samplers). Neither sampler here implements a discrete or
"snapping" mitigation (Canonne et al. 2020, discrete Gaussian); the guarantee privlab reports is the
one of the idealised real-valued mechanism.
"""

from __future__ import annotations

import hashlib
import math
import os

import numpy as np
import torch


def secure_standard_normal(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normals from ``os.urandom`` via Box-Muller (float64, then cast to ``dtype``)."""
    n = int(math.prod(shape))
    m = (n + 1) // 2
    raw = np.frombuffer(os.urandom(16 * m), dtype=np.uint64).reshape(2, m)
    u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53  # uniform in (0, 1)
    r = np.sqrt(-2.0 * np.log(u[0]))
    theta = 2.0 * np.pi * u[1]
    z = np.concatenate([r * np.cos(theta), r * np.sin(theta)])[:n]
    return torch.from_numpy(z).to(dtype).reshape(shape)


def secure_uniform(n: int) -> np.ndarray:
    """``n`` uniforms in [0, 1) from ``os.urandom`` (53-bit resolution)."""
    raw = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53


def derive_seed(seed: int, *labels: int | str) -> int:
    """A 63-bit seed from ``seed`` and ``labels``: ``int(SHA-256("seed/label1/label2/...")[:8]) >> 1``.

    For seeded (reproducible, not secure) streams: distinct label tuples give independent-looking
    seeds (collisions have probability ~2^-63 per pair), unlike an affine combination of the labels
    (``seed * a + round * b + client`` repeats once ``client >= b``).
    """
    text = "/".join(str(x) for x in (seed, *labels)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1
