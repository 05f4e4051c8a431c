"""User-level privacy accounting of DP-FedAvg with privlab's accountant.

One round of DP-FedAvg (McMahan, Ramage, Talwar & Zhang 2018, "Learning Differentially Private
Recurrent Language Models") releases ``sum_{i in S} clip_C(Delta_i) + N(0, z^2 C^2 I)`` for a sample
``S`` of the clients; a *user* (client) is the unit of adjacency, so the per-round mechanism is the
sampled Gaussian mechanism with noise multiplier z over users, and ``rounds`` rounds are its
composition. It is accounted exactly like DP-SGD with examples replaced by users, with the bound
of the sampling that ran (``FedConfig.sampling``) as the headline :meth:`UserLevelAccountant.epsilon`:

* ``"poisson"`` (central DP's default): :class:`privlab.accounting.PrivacyLedger` with sampling rate
  ``q = clients_per_round / num_clients`` (Poisson-subsampled Gaussian, add/remove one user; McMahan
  et al. 2018, Andrew et al. 2021). privlab's server samples each client independently with
  probability q (:mod:`privlab.fl.sampling`), so this bound is exact for what runs.
* ``"fixed"`` (SecAgg+ and distributed noise): exactly m of N clients without replacement, Flower's
  sampling; the bound is :func:`privlab.accounting.fixed_size.fixed_size_epsilon` (replace one
  user, RDP), which the Poisson bound does not cover: 24.9 against 3.59 for N=100, m=10, z=1,
  20 rounds, delta=1e-5. ``target_epsilon`` calibrates z against the same bound.

With adaptive clipping, z is the noise multiplier of the whole round: the update noise
``z_Delta = (z^-2 - (2 sigma_b)^-2)^-1/2`` and the clipped-count noise ``sigma_b`` compose to a
Gaussian mechanism with multiplier z (Andrew et al. 2021, Theorem 1), which is how Flower's wrapper
calibrates them. The theorem needs the count released *centred*, ``sum_i (b_i - 1/2)`` with
sensitivity 1/2 under add/remove, normalised by the expected (public) m; an uncentred count has
sensitivity 1 and would compose to ``(z_Delta^-2 + sigma_b^-2)^-1/2 < z``. privlab's wrapper
(:mod:`privlab.fl.central_dp`) releases the centred form, which equals the uncentred count when all
m sampled clients reply (always, :class:`~privlab.fl.server.StrictGrid`); under replace-one
adjacency both the count's and the update sum's sensitivity double, so the same z holds.

Distributed DP with SecAgg+ calibrates each client's noise to the fewest vectors a round may sum
(:func:`privlab.fl.client.distributed_noise_std`), so the z recorded here is a lower bound on every
round's realised noise multiplier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from privlab._validation import check_choice
from privlab.accounting import PrivacyLedger, calibrate_noise
from privlab.accounting.fixed_size import calibrate_fixed_size_noise, fixed_size_epsilon
from privlab.errors import InvalidParameterError
from privlab.fl.config import FedConfig


def noise_multiplier_of(cfg: FedConfig) -> float:
    """z of ``cfg.dp``: given, or calibrated to ``target_epsilon`` over ``cfg.rounds`` rounds for ``cfg.sampling``."""
    dp = cfg.dp
    if dp is None:
        raise InvalidParameterError("The 'dp' parameter of FedConfig is None: the run has no noise multiplier.")
    if dp.noise_multiplier is not None:
        return float(dp.noise_multiplier)
    eps = dp.target_epsilon
    if eps is None:  # unreachable: UserDPConfig requires exactly one of the two
        raise InvalidParameterError("The 'dp' parameter of FedConfig has neither noise_multiplier nor target_epsilon.")
    if cfg.sampling == "fixed":
        return _calibrated_fixed(eps, cfg.num_clients, cfg.clients_per_round, cfg.rounds, dp.delta)
    return _calibrated(eps, cfg.sample_rate, cfg.rounds, dp.delta, dp.accountant)


@lru_cache(maxsize=32)
def _calibrated(eps: float, q: float, rounds: int, delta: float, accountant: str) -> float:
    return calibrate_noise(eps, q, rounds, delta, accountant)


@lru_cache(maxsize=32)
def _calibrated_fixed(eps: float, n: int, m: int, rounds: int, delta: float) -> float:
    return calibrate_fixed_size_noise(eps, n, m, rounds, delta)


def accountant_of(cfg: FedConfig) -> UserLevelAccountant | None:
    """The run's :class:`UserLevelAccountant` (None without DP), for ``cfg.sampling``."""
    if cfg.dp is None:
        return None
    return UserLevelAccountant(
        cfg.num_clients, cfg.clients_per_round, noise_multiplier_of(cfg), cfg.dp.delta, cfg.dp.accountant,
        sampling=cfg.sampling,
    )


@dataclass
class UserLevelAccountant:
    """Per-round user-level (epsilon, delta) of a DP-FedAvg run, on a :class:`PrivacyLedger`.

    ``sampling`` ("poisson" or "fixed") is how clients were sampled; :meth:`epsilon` is its bound.
    """

    num_clients: int
    clients_per_round: int
    noise_multiplier: float
    delta: float
    accountant: str = "pld"
    sampling: str = "poisson"
    ledger: PrivacyLedger = field(init=False)

    def __post_init__(self) -> None:
        check_choice(self.sampling, "sampling", "UserLevelAccountant", ("poisson", "fixed"))
        if not 2 <= self.clients_per_round <= self.num_clients:
            raise InvalidParameterError(
                "The 'clients_per_round' parameter of UserLevelAccountant must be in [2, num_clients="
                f"{self.num_clients}]. Got {self.clients_per_round} instead."
            )
        self.ledger = PrivacyLedger(delta=self.delta, accountant=self.accountant, privacy_unit="client")

    @property
    def sample_rate(self) -> float:
        return self.clients_per_round / self.num_clients

    @property
    def rounds(self) -> int:
        return self.ledger.steps

    def record_round(self, rounds: int = 1) -> None:
        """Record ``rounds`` rounds (each a sampled Gaussian release over users)."""
        self.ledger.record(self.noise_multiplier, self.sample_rate, rounds)

    def step(self) -> float:
        """Record one round; return the user-level epsilon after it (:meth:`epsilon`)."""
        self.record_round()
        return self.epsilon()

    def epsilon(self) -> float:
        """User-level epsilon so far at ``delta`` for the run's ``sampling`` (module doc)."""
        return self.epsilon_poisson() if self.sampling == "poisson" else self.epsilon_fixed_size()

    def epsilon_poisson(self) -> float:
        """User-level epsilon so far at ``delta`` for Poisson sampling at q (add/remove one user)."""
        return self.ledger.epsilon()

    def epsilon_fixed_size(self) -> float:
        """User-level epsilon so far for sampling exactly m of N clients (replace one user, RDP)."""
        if self.rounds == 0:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        return fixed_size_epsilon(
            self.noise_multiplier, self.num_clients, self.clients_per_round, self.rounds, self.delta
        )
