"""LiRA and friends on your own model: 16 reference MLPs + 1 target on 4,000 MNIST points (~1-2 min on CPU).

    .venv/bin/python examples/mia_lira.py

Swap ``make_model`` / ``my_train`` for your own ``nn.Module`` factory and training function; or skip
training entirely and build ``Signals.from_logits(logits, labels)`` from logits you computed yourself.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from privlab.attacks import PopulationSignals, compute_signals, plot_roc, run_attacks
from privlab.data import ArrayDataset, load_mnist, membership_mask
from privlab.train import TrainConfig, train_ensemble, train_model


def make_model() -> nn.Module:  # any nn.Module factory
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def my_train(model: nn.Module, data: ArrayDataset, cfg: TrainConfig) -> nn.Module:
    """A user's own training function (here: privlab's plain loop); called once per model."""
    return train_model(model, data, cfg)


def main() -> None:
    full = load_mnist("train")
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(full)))
    data, population = full.subset(order[:4000]), full.subset(order[4000:6000])
    mask = membership_mask(17, len(data), seed=0)  # row 0: the target; rows 1..16: reference models
    cfg = TrainConfig(epochs=30, batch_size=32, lr=0.05, seed=0)

    # Vectorised: all 17 models in one batched pass per step. For your own loop, pass train_fn=my_train.
    ens = train_ensemble(make_model, data, mask, cfg, cache_dir=".cache/mia_example")
    sig, pop = compute_signals(ens, data), compute_signals(ens, population)

    refs = list(range(1, 17))
    result = run_attacks(
        sig.select([0]),
        mask[0],
        sig.select(refs),
        mask[refs],
        population_signals=PopulationSignals(pop.select([0]), pop.select(refs)),
    )
    print(result.table())
    result.to_json("mia_result.json")
    print("wrote", *plot_roc(result, "mia_roc.png"))


if __name__ == "__main__":
    main()
