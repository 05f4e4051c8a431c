"""Federated learning on Flower: user-level DP-FedAvg with privlab's accountant, secure aggregation,
and the attacks that test both (gradient inversion, subject-level membership inference).

Flower (``flwr``, with its Ray simulation engine) is an optional extra: ``pip install 'privlab[fl]'``.
See ``docs/federated.md``.

    from privlab.fl import FedConfig, UserDPConfig, run_federated
    res = run_federated(FedConfig(num_clients=100, clients_per_round=10, rounds=20,
                                  dp=UserDPConfig(noise_multiplier=1.0, clip_norm=1.0)))
    res.accuracy, res.epsilon                     # user-level epsilon at delta=1e-5
"""

from privlab.fl.config import FedConfig, UserDPConfig
from privlab.fl.partition import dirichlet_partition, iid_partition, partition, user_partition
from privlab.fl.privacy import UserLevelAccountant, noise_multiplier_of
from privlab.fl.server import RoundRecord
from privlab.fl.simulation import FederatedRunError, FedResult, run_federated

__all__ = [
    "FedConfig",
    "FedResult",
    "FederatedRunError",
    "RoundRecord",
    "UserDPConfig",
    "UserLevelAccountant",
    "dirichlet_partition",
    "iid_partition",
    "noise_multiplier_of",
    "partition",
    "run_federated",
    "user_partition",
]
