"""``privlab attack --model PATH --data DATA``: attack a model that is already trained.

``PATH`` is what ``privlab train`` wrote (its directory or ``model.safetensors``) or bare safetensors
weights of a privlab MLP / SmallCNN. ``DATA`` says who the members are: a dataset name (members =
its train split, which ``privlab train`` trains on; non-members = its test split), or a
``.safetensors`` / ``.npz`` file with ``x``, ``y`` and ``member`` (1 = in the model's training set).
Reference models are trained like the target: from a ``privlab train`` checkpoint its own config
(epochs, batch size, lr, momentum, clipping norm and noise multiplier); otherwise the command's
training flags (``--epochs``, ``--batch-size``, ``--lr``, ``--optimizer`` and the DP-SGD-style ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from privlab.attacks.own_model import attack_model, load_membership_file, load_trained
from privlab.attacks.plot import plot_roc
from privlab.data import load_dataset
from privlab.errors import InvalidParameterError
from privlab.train import TrainConfig

# The TrainConfig fields the command's DP-SGD-style flags fill (named once here).
DP_FIELDS = {"dp_max_grad_norm": "dp_max_grad_norm", "dp_noise_multiplier": "dp_noise_multiplier"}


def is_model_path(value: str) -> bool:
    """Does ``--model`` name a trained model (a path) rather than an architecture to train?"""
    p = Path(value)
    return p.suffix == ".safetensors" or p.is_dir() or p.is_file() or "/" in value or "\\" in value


def _members(data: str | None, default: str | None) -> tuple[Any, Any, str]:
    name = data or default
    if name is None:
        raise InvalidParameterError(
            "The 'data' parameter of privlab attack must name the target's data with --model PATH: a dataset "
            "name or a .safetensors/.npz file with x, y and member. Got None instead."
        )
    if Path(name).suffix in (".safetensors", ".npz"):
        members, nonmembers = load_membership_file(name)
        return members, nonmembers, f"{name} ({len(members)} members, {len(nonmembers)} non-members)"
    members, nonmembers = load_dataset(name, "train"), load_dataset(name, "test")
    return members, nonmembers, f"{name}: members from its train split, non-members from its test split"


def run_own(o: dict[str, Any], attacks: list[str]) -> None:
    """Attack the trained model at ``o["model"]`` and print (and optionally write) the result."""
    tm = load_trained(o["model"])
    members, nonmembers, where = _members(o.get("data"), tm.dataset)
    spec = tm.train
    describe = tm.describe
    if spec is None:
        spec = TrainConfig(
            epochs=o["epochs"],
            batch_size=o["batch_size"],
            lr=o["lr"],
            optimizer=o["optimizer"],
            seed=int(o["seed"]),
            **{field: o[flag] for field, flag in DP_FIELDS.items() if flag in o},
        )
        describe = f"{describe}; trained with the command's training flags"
    typer.echo(f"target: {o['model']} ({tm.architecture}); data: {where}")
    typer.echo(f"training {o['n_reference']} reference models {describe}")
    res = attack_model(
        tm.model,
        members,
        nonmembers,
        tm.factory,
        spec,
        n_reference=int(o["n_reference"]),
        n_examples=int(o["n_examples"]),
        n_population=int(o["n_population"]),
        attacks=attacks,
        seed=int(o["seed"]),
        n_bootstrap=int(o["bootstrap"]),
        augment=bool(o["augment"]),
        cache_dir=o["cache_dir"],
        describe=describe,
    )
    typer.echo(res.table())
    if o["output"] is not None:
        res.to_json(o["output"])
        typer.echo(f"wrote {o['output']}")
    if o["plot"] is not None:
        for p in plot_roc(res, o["plot"], title=f"{Path(o['model']).name}, {o['n_reference']} reference models"):
            typer.echo(f"wrote {p}")
