"""Reference mechanisms with known privacy guarantees, for testing audits (pure numpy, vectorised).

Each mechanism releases one number per run that depends on a single canary bit (IN or OUT), so
the best possible attack is known and the audited lower bound can be compared to the true epsilon:

* :class:`RandomizedResponse` -- releases the bit, flipped with probability ``1 / (1 + e^eps)``;
  eps-DP, and exactly ``(log((p - delta) / (1 - p)), delta)``-DP with ``p = e^eps / (1 + e^eps)``.
* :class:`GaussianMechanism` -- releases ``bit * sensitivity + N(0, sigma^2)``; ``mu = sensitivity / sigma``
  Gaussian-DP, with the exact epsilon at delta of Balle & Wang 2018 (Theorem 8), "Improving the
  Gaussian Mechanism for Differential Privacy: Analytical Calibration and Optimal Denoising".

Scores are oriented so that a higher score means "IN".
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt
import scipy.optimize

from privlab._validation import check_int, check_real
from privlab.audit.stats._common import gdp_epsilon

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _check_sizes(n_in: int, n_out: int, owner: str) -> tuple[int, int]:
    return check_int(n_in, "n_in", owner, low=0), check_int(n_out, "n_out", owner, low=0)


@dataclasses.dataclass(frozen=True)
class RandomizedResponse:
    """Randomized response on the canary bit with privacy parameter ``epsilon`` (pure DP)."""

    epsilon: float

    def __post_init__(self) -> None:
        check_real(self.epsilon, "epsilon", "RandomizedResponse", low=0.0)

    @property
    def p_truth(self) -> float:
        """Probability of reporting the true bit, ``e^eps / (1 + e^eps)``."""
        return 1.0 / (1.0 + math.exp(-self.epsilon))

    def epsilon_at(self, delta: float) -> float:
        """Exact epsilon at ``delta``: the hockey-stick divergence ``max(0, p - e^e (1 - p))`` equals delta
        at ``e = log((p - delta) / (1 - p))`` (0 once ``delta >= 2p - 1``)."""
        delta = check_real(delta, "delta", "RandomizedResponse.epsilon_at", low=0.0, high=1.0, high_open=True)
        if delta == 0.0:
            return float(self.epsilon)
        p = self.p_truth
        return max(0.0, math.log((p - delta) / (1.0 - p))) if p - delta > 1.0 - p else 0.0

    def sample(self, n_in: int, n_out: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        """Scores (0 or 1) of ``n_in`` runs with the canary and ``n_out`` without it."""
        n_in, n_out = _check_sizes(n_in, n_out, "RandomizedResponse.sample")
        p = self.p_truth
        return (rng.random(n_in) < p).astype(np.float64), (rng.random(n_out) >= p).astype(np.float64)

    def sample_one_run(self, m: int, rng: np.random.Generator) -> tuple[FloatArray, BoolArray]:
        """``m`` canaries included independently w.p. 1/2 and their scores: ``(scores, included)``."""
        m = check_int(m, "m", "RandomizedResponse.sample_one_run", low=1)
        included = rng.random(m) < 0.5
        flip = rng.random(m) >= self.p_truth
        return (included ^ flip).astype(np.float64), included


@dataclasses.dataclass(frozen=True)
class GaussianMechanism:
    """``bit * sensitivity + N(0, sigma^2)``: ``mu``-GDP with ``mu = sensitivity / sigma``."""

    sigma: float
    sensitivity: float = 1.0

    def __post_init__(self) -> None:
        check_real(self.sigma, "sigma", "GaussianMechanism", low=0.0, low_open=True)
        check_real(self.sensitivity, "sensitivity", "GaussianMechanism", low=0.0, low_open=True)

    @property
    def mu(self) -> float:
        return self.sensitivity / self.sigma

    @classmethod
    def from_epsilon(cls, epsilon: float, delta: float, sensitivity: float = 1.0) -> GaussianMechanism:
        """The mechanism whose exact epsilon at ``delta`` is ``epsilon`` (analytic calibration, Balle & Wang)."""
        owner = "GaussianMechanism.from_epsilon"
        epsilon = check_real(epsilon, "epsilon", owner, low=0.0, low_open=True)
        delta = check_real(delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
        hi = 1.0
        while gdp_epsilon(hi, delta) < epsilon:
            hi *= 2.0
        mu = float(scipy.optimize.brentq(lambda u: gdp_epsilon(u, delta) - epsilon, 1e-12, hi, xtol=1e-12))
        return cls(sigma=sensitivity / mu, sensitivity=sensitivity)

    def epsilon_at(self, delta: float) -> float:
        """Exact epsilon at ``delta``: the root of ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) = delta``."""
        delta = check_real(delta, "delta", "GaussianMechanism.epsilon_at", low=0.0, high=1.0, high_open=True)
        return gdp_epsilon(self.mu, delta)

    def sample(self, n_in: int, n_out: int, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
        """Releases of ``n_in`` runs with the canary (mean ``sensitivity``) and ``n_out`` without (mean 0)."""
        n_in, n_out = _check_sizes(n_in, n_out, "GaussianMechanism.sample")
        return self.sensitivity + self.sigma * rng.standard_normal(n_in), self.sigma * rng.standard_normal(n_out)

    def sample_one_run(self, m: int, rng: np.random.Generator) -> tuple[FloatArray, BoolArray]:
        """``m`` canaries included independently w.p. 1/2, each released independently: ``(scores, included)``."""
        m = check_int(m, "m", "GaussianMechanism.sample_one_run", low=1)
        included = rng.random(m) < 0.5
        return included * self.sensitivity + self.sigma * rng.standard_normal(m), included
