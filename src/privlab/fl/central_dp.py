"""Central DP on the server: Flower's DP wrappers of FedAvg, with privlab's noise source and two fixes.

Both wrappers subclass Flower's (``flwr.serverapp.strategy``) and change only what is listed here:

* the Gaussian noise on the aggregate (std ``z_Delta C_t / m``) and the clipped-count noise come
  from a :class:`privlab.fl.randomness.NoiseSource`: seeded (reproducible) or the OS CSPRNG
  (``FedConfig.secure_rng``); Flower draws both from numpy's global generator;
* ``round_clip_norm``: the norm this round's updates were clipped to (what the round reports);
* Flower's warning that the replies differ in number from ``num_sampled_clients`` is dropped:
  with Poisson sampling (:mod:`privlab.fl.sampling`) m is the expected number, the mechanism
  divides by it on purpose, and with fixed sampling :class:`~privlab.fl.server.StrictGrid` ends a
  round that lost a reply before the wrapper sees it.

Adaptive clipping (Andrew, Thakkar, McMahan & Ramaswamy 2021, "Differentially Private Learning with
Adaptive Clipping", Alg. 1 and Thm. 1), per round t with m sampled clients:

    b_i = 1[ ||Delta_i|| <= C_t ]                                   (update i NOT clipped)
    b~  = ( sum_i (b_i - 1/2) + N(0, sigma_b^2) ) / m + 1/2          (noisy unclipped fraction)
    C_{t+1} = C_t exp( -eta_C (b~ - gamma) )                         (gamma = target quantile)

so C grows when fewer than a fraction gamma of the updates fit under it and shrinks otherwise, and
converges to the gamma-quantile of the update norms. Flower 1.42's wrapper applies the same
exponent to the noisy fraction of *clipped* updates, ``C *= exp(-eta (clipped - gamma))``, which
moves C away from the quantile (every update clipped: C shrinks further); privlab's subclass
releases b~ as above.

Privacy (Thm. 1): the centred count ``sum_i (b_i - 1/2)`` changes by 1/2 when one user is added or
removed, the update sum by C_t; releasing both with noise ``z_Delta C_t`` and ``sigma_b`` is the
Gaussian mechanism with multiplier ``z = (z_Delta^-2 + (2 sigma_b)^-2)^-1/2``, which is how
Flower calibrates ``z_Delta`` from the requested z. With Poisson client sampling the number of
replies |S| is random and the centring is what makes the sensitivity 1/2 in the add/remove model;
the sum is normalised by the expected, public m. With exactly m replies (fixed sampling),
``sum (b_i - 1/2) + m/2 = sum b_i``, the uncentred count; under its replace-one adjacency the count
moves by 1 and the update sum by 2 C_t, the same ratio, hence the same z.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from privlab.fl.randomness import NoiseSource


class _NoCountWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from flwr.supercore.differential_privacy import CLIENTS_DISCREPANCY_WARNING

        return record.msg != CLIENTS_DISCREPANCY_WARNING


@contextlib.contextmanager
def _no_count_warning() -> Iterator[None]:
    """Drop Flower's reply-count warning while a wrapper aggregates (module doc)."""
    flt, logger = _NoCountWarning(), logging.getLogger("flwr")
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def _noised(source: NoiseSource, aggregated: Any, std: float) -> Any:
    """``aggregated`` (an ArrayRecord) plus N(0, std^2) per coordinate from ``source``."""
    from flwr.app import Array, ArrayRecord

    arrays = aggregated.to_numpy_ndarrays()
    noisy = [a + source.normal_like(np.asarray(a), std) for a in arrays]
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in zip(aggregated.keys(), noisy, strict=True)})


def fixed_clipping(base: Any, z: float, clip_norm: float, m: int, source: NoiseSource) -> Any:
    """Flower's ``DifferentialPrivacyServerSideFixedClipping`` with its noise drawn from ``source``."""
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

    class FixedClipping(DifferentialPrivacyServerSideFixedClipping):  # type: ignore[misc]
        """Sum of updates clipped to C, plus N(0, z^2 C^2), divided by m (McMahan et al. 2018)."""

        @property
        def round_clip_norm(self) -> float:
            return float(self.clipping_norm)

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            with _no_count_warning():
                return super().aggregate_train(server_round, list(replies))

        def _add_noise_to_aggregated_arrays(self, aggregated: Any) -> Any:
            return _noised(source, aggregated, self.noise_multiplier * self.clipping_norm / self.num_sampled_clients)

    return FixedClipping(base, z, clip_norm, m)


def adaptive_clipping(
    base: Any,
    z: float,
    m: int,
    *,
    clip_norm: float,
    target_quantile: float,
    clip_lr: float,
    clipped_count_stddev: float | None,
    source: NoiseSource,
) -> Any:
    """Flower's ``DifferentialPrivacyServerSideAdaptiveClipping``, following Andrew et al. 2021 (module doc)."""
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideAdaptiveClipping

    class AdaptiveClipping(DifferentialPrivacyServerSideAdaptiveClipping):  # type: ignore[misc]
        """Adaptive clipping towards the ``target_quantile`` of update norms, noise at this round's C.

        Flower's ``aggregate_train`` updates the clip norm before adding noise, so its noise std is
        ``z C_{t+1} / m`` while the sensitivity is ``C_t / m``; here the noise uses ``C_t``. Its
        norm update uses the clipped fraction where Andrew et al. use the unclipped one; here
        ``_noisy_fraction`` returns the noisy unclipped fraction b~.
        """

        round_clip_norm: float = clip_norm

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            self.round_clip_norm = float(self.clipping_norm)
            with _no_count_warning():
                return super().aggregate_train(server_round, list(replies))

        def _noisy_fraction(self, count: int, total: int) -> float:
            # Flower passes the number of *clipped* replies; b~ = (sum (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2
            centred = (total - count) - total / 2
            noise = float(source.normal((1,), self.clipped_count_stddev, dtype=torch.float64)[0])
            return (centred + noise) / self.num_sampled_clients + 0.5

        def _add_noise_to_aggregated_arrays(self, aggregated: Any) -> Any:
            std = self.noise_multiplier * self.round_clip_norm / self.num_sampled_clients
            return _noised(source, aggregated, std)

    return AdaptiveClipping(
        base,
        z,
        m,
        initial_clipping_norm=clip_norm,
        target_clipped_quantile=target_quantile,
        clip_norm_lr=clip_lr,
        clipped_count_stddev=clipped_count_stddev,
    )

