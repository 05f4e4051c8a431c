"""``privlab attack``: train (or load from cache) a target and reference models, run the attacks, print a table.

``--model PATH --data DATA`` attacks an already trained model instead (:mod:`privlab.cli.attack_model`).

The target is model 0 of an ensemble of ``n_reference + 1`` models trained on random halves of
``n_examples`` points (row 0 of the membership mask is the target's membership); the reference
models are rows 1..n_reference. Flags or ``--config FILE`` (YAML or JSON with the same keys,
underscores for dashes); flags given explicitly win over the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import typer
import yaml

from privlab._validation import check_choice
from privlab.attacks.base import ATTACKS
from privlab.attacks.plot import plot_roc
from privlab.attacks.results import DEFAULT_ATTACKS, run_attacks
from privlab.attacks.signals import PopulationSignals, compute_signals
from privlab.cli.attack_model import is_model_path, run_own
from privlab.cli.errors import cli_errors
from privlab.data import load_dataset, membership_mask
from privlab.errors import ConfigError
from privlab.models import build_model
from privlab.train import TrainConfig, train_ensemble


def _load_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"Cannot read attack config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"Attack config {path} must be a mapping of option names to values.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def attack(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="YAML/JSON file with any of the options below."),
    dataset: str = typer.Option("fashion_mnist", help="Dataset name (mnist, fashion_mnist)."),
    n_examples: int = typer.Option(4000, help="Population size; each model trains on a random half."),
    n_population: int = typer.Option(2000, help="Extra points in no training set (RMIA's z samples)."),
    n_reference: int = typer.Option(16, help="Number of reference (shadow) models."),
    model: str = typer.Option(
        "mlp", help="Architecture of the models to train (mlp or cnn), or the PATH of a trained model to attack "
        "(a `privlab train` directory or a .safetensors file; see --data)."
    ),
    data: str | None = typer.Option(
        None, help="With --model PATH: the target's data, a dataset name (members: its train split, non-members: its "
        "test split; default: the checkpoint's dataset) or a .safetensors/.npz file with x, y and member."
    ),
    hidden: int = typer.Option(64, help="Hidden width of the MLP."),
    epochs: float = typer.Option(20.0, help="Training epochs of every model."),
    batch_size: int = typer.Option(32, help="Minibatch size."),
    lr: float = typer.Option(0.05, help="Learning rate."),
    optimizer: str = typer.Option("sgd", help="sgd or adam."),
    max_grad_norm: float = typer.Option(
        0.0, help="> 0: train every model DP-SGD-style, each example's gradient clipped to this norm."
    ),
    noise_multiplier: float = typer.Option(
        0.0, help="Gaussian noise sigma * C on the clipped sum (with --max-grad-norm; not accounted)."
    ),
    seed: int = typer.Option(0, help="Seed of the data split, membership mask and training."),
    attacks: str = typer.Option(",".join(DEFAULT_ATTACKS), help="Comma-separated attack names."),
    augment: bool = typer.Option(False, help="Average signals over flips/shifts of each query."),
    bootstrap: int = typer.Option(200, help="Bootstrap resamples for the intervals."),
    cache_dir: Path | None = typer.Option(None, help="Cache trained models here (reused, resumable)."),
    chunk_size: int | None = typer.Option(None, help="Models trained (and cached) together."),
    backend: str = typer.Option("local", help="local (vectorised), loop, processes (one worker per CPU) or ray."),
    ray_address: str | None = typer.Option(None, help="Ray cluster address for --backend ray (default: local Ray)."),
    output: Path | None = typer.Option(None, help="Write the versioned JSON result here."),
    plot: Path | None = typer.Option(None, help="Write the log-log ROC here (PNG, plus SVG beside it)."),
) -> None:
    """Membership-inference attacks (LOSS, Attack-R, LiRA, RMIA) on a model and its data."""
    opts = dict(ctx.params)
    if config is not None:
        try:
            file_opts = _load_config(config)
        except ConfigError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        unknown = sorted(set(file_opts) - set(opts))
        if unknown:
            typer.echo(f"error: unknown keys {unknown} in {config}; expected some of {sorted(opts)}", err=True)
            raise typer.Exit(2)
        for k, v in file_opts.items():
            source = ctx.get_parameter_source(k)  # Typer's own copy of Click has its own enum: compare names
            if getattr(source, "name", None) != click.core.ParameterSource.COMMANDLINE.name:
                opts[k] = v
    with cli_errors({"name": "--dataset"}):
        if is_model_path(str(opts["model"])):
            names = [a.strip() for a in str(opts["attacks"]).split(",") if a.strip()]
            for a in names:  # fail before training, not after
                check_choice(a, "attacks", "privlab attack", ATTACKS)
            with cli_errors({"name": "--data", "data": "--data"}):
                run_own(opts, names)
        else:
            _run(opts)


def _run(o: dict[str, Any]) -> None:
    names = [a.strip() for a in str(o["attacks"]).split(",") if a.strip()]
    for a in names:  # fail before training, not after
        check_choice(a, "attacks", "privlab attack", ATTACKS)
    full = load_dataset(o["dataset"], split="train")
    n, n_pop, k = int(o["n_examples"]), int(o["n_population"]), int(o["n_reference"]) + 1
    if n + n_pop > len(full):
        raise ConfigError(f"n_examples + n_population = {n + n_pop} exceeds the {len(full)} rows of {o['dataset']}.")
    order = torch.from_numpy(np.random.default_rng(o["seed"]).permutation(len(full)))
    data, pop = full.subset(order[:n]), full.subset(order[n : n + n_pop])
    mask = membership_mask(k, n, seed=int(o["seed"]))
    cfg = TrainConfig(
        epochs=o["epochs"],
        batch_size=o["batch_size"],
        lr=o["lr"],
        optimizer=o["optimizer"],
        seed=int(o["seed"]),
        max_grad_norm=o["max_grad_norm"],  # TrainConfig validates (a clear error for null or text)
        noise_multiplier=o["noise_multiplier"],
    )
    kw = {"hidden": (int(o["hidden"]),)} if o["model"] == "mlp" else {}
    name = str(o["model"])

    def factory() -> torch.nn.Module:
        return build_model(name, **kw)

    typer.echo(f"training target + {k - 1} reference models ({name}, {n} examples, {cfg.epochs:g} epochs)")
    ens = train_ensemble(
        factory,
        data,
        mask,
        cfg,
        cache_dir=o["cache_dir"],
        chunk_size=o["chunk_size"],
        backend=o["backend"],
        progress=True,
        ray_address=o["ray_address"],
    )
    sig = compute_signals(ens, data, augment=bool(o["augment"]))
    psig = compute_signals(ens, pop, augment=bool(o["augment"]))
    refs = list(range(1, k))
    res = run_attacks(
        sig.select([0]),
        mask[0],
        sig.select(refs),
        mask[refs],
        attacks=names,
        population_signals=PopulationSignals(psig.select([0]), psig.select(refs)),
        seed=int(o["seed"]),
        n_bootstrap=int(o["bootstrap"]),
    )
    typer.echo(res.table())
    if o["output"] is not None:
        res.to_json(o["output"])
        typer.echo(f"wrote {o['output']}")
    if o["plot"] is not None:
        for p in plot_roc(res, o["plot"], title=f"{o['dataset']}, {name}, {k - 1} reference models"):
            typer.echo(f"wrote {p}")
