"""Training reference (shadow) models: a plain loop and a vectorised, cached ensemble trainer.

``train_model`` trains one model; ``train_ensemble`` trains K models of one architecture, each on
its own row of a (K, N) membership mask, stacking their parameters and vectorising over models
(one batched pass per step: hand-written batched products for plain MLPs, ``torch.func`` for any
other model), caching chunks on disk (safetensors + JSON), and
optionally spreading chunks over Ray workers.
"""

from privlab.train.config import TrainConfig
from privlab.train.ensemble import BACKENDS, EnsembleResult, one_by_one, train_ensemble
from privlab.train.fit import accuracy, fit
from privlab.train.loop import train_model
from privlab.train.sampling import index_stream, init_model, model_seed, num_steps

__all__ = [
    "BACKENDS",
    "EnsembleResult",
    "TrainConfig",
    "accuracy",
    "fit",
    "index_stream",
    "init_model",
    "model_seed",
    "num_steps",
    "one_by_one",
    "train_ensemble",
    "train_model",
]
