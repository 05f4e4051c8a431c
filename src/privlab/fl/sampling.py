"""Poisson client sampling for central DP-FedAvg: the mechanism the Poisson accountant bounds.

Flower's FedAvg samples exactly m of the N nodes (``random.sample``). The user-level accountant's
headline, the Poisson-subsampled Gaussian at q = m / N (add/remove one user), is a bound for a
different mechanism (McMahan, Ramage, Talwar & Zhang 2018, "Learning Differentially Private
Recurrent Language Models", Alg. 1, the fixed-denominator estimator):

    S_t = { i : U_i < q },  U_i ~ Uniform[0, 1) independently per client and round
    w_{t+1} = w_t + ( sum_{i in S_t} clip_C(Delta_i) + N(0, z^2 C^2 I) ) / (q N)

The divisor is the *expected* number of clients q N = m, which is public; dividing by |S_t| would
make the sensitivity depend on the sample. A round nobody joined still releases ``w_t`` plus the
noise, so every round is the same Gaussian release. :func:`poisson_fedavg` is Flower's
``FedAvg`` (Message API) with this sampling and this sum; Flower's server-side DP wrappers
(:mod:`privlab.fl.central_dp`) clip the replies before it sums them and add the noise after.

The draws ``U_i`` come from the OS CSPRNG with ``FedConfig.secure_rng``, else from a generator
seeded by :func:`privlab.dp.noise.derive_seed` (seed, "client-sampling", round), over the node
ids in sorted order (the same nodes give the same sample, whatever order the grid lists them in).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from privlab.dp.noise import derive_seed, secure_uniform
from privlab.fl.config import FedConfig

log = logging.getLogger("privlab.fl")


def poisson_draw(node_ids: list[int], q: float, rng: np.random.Generator | None) -> list[int]:
    """The nodes of ``node_ids`` (sorted) that join: each independently with probability ``q``.

    ``rng=None`` draws from the OS CSPRNG (:func:`privlab.dp.noise.secure_uniform`, as DP-SGD's sampler).
    """
    nodes = sorted(node_ids)
    u = secure_uniform(len(nodes)) if rng is None else rng.random(len(nodes))
    return [n for n, ui in zip(nodes, u, strict=True) if ui < q]


def poisson_fedavg(cfg: FedConfig, **fedavg_kwargs: Any) -> Any:
    """Flower's ``FedAvg`` that samples clients at rate ``cfg.sample_rate`` and sums over the expected m.

    ``fedavg_kwargs`` go to ``flwr.serverapp.strategy.FedAvg`` (its ``fraction_train`` and
    ``min_train_nodes`` are unused: the sample size is random). Client weights must be equal
    (``weighted_by_key`` names them): then FedAvg's weighted mean times ``|S| / m`` is the sum / m.
    """
    from flwr.app import Array, ArrayRecord, MessageType, RecordDict
    from flwr.serverapp.strategy import FedAvg

    q, m = cfg.sample_rate, cfg.clients_per_round

    class PoissonFedAvg(FedAvg):  # type: ignore[misc]
        """FedAvg with Poisson client sampling and the fixed denominator m (module doc)."""

        current_arrays: Any = None

        def configure_train(self, server_round: int, arrays: Any, config: Any, grid: Any) -> Any:
            self.current_arrays = arrays
            nodes = list(grid.get_node_ids())
            while len(nodes) < self.min_available_nodes:  # as Flower's sample_nodes: q is over all N clients
                log.info("waiting for clients: %d of %d connected", len(nodes), self.min_available_nodes)
                time.sleep(1.0)
                nodes = list(grid.get_node_ids())
            seed = derive_seed(cfg.seed, "client-sampling", server_round)
            rng = None if cfg.secure_rng else np.random.default_rng(seed)
            chosen = poisson_draw(nodes, q, rng)
            config["server-round"] = server_round  # as FedAvg.configure_train does
            record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
            return self._construct_messages(record, chosen, MessageType.TRAIN)

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            current = self.current_arrays
            if not replies:  # nobody joined: w_t, to which the DP wrapper still adds the round's noise
                return current, None
            mean, metrics = super().aggregate_train(server_round, replies)
            if mean is None:
                return None, metrics
            scale = len(replies) / m  # mean of the |S| clipped models -> w_t + sum of clipped updates / m
            pairs = zip(mean.to_numpy_ndarrays(), current.to_numpy_ndarrays(), strict=True)
            out = [(c + scale * (a - c)).astype(a.dtype, copy=False) for a, c in pairs]
            return ArrayRecord({k: Array(np.asarray(v)) for k, v in zip(mean.keys(), out, strict=True)}), metrics

    return PoissonFedAvg(**fedavg_kwargs)
