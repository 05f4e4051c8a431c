"""``privlab train``: train a classifier with DP-SGD and save it with its privacy ledger.

Writes ``model.safetensors``, ``ledger.json`` and ``config.json`` (see :mod:`privlab.dp.checkpoint`)
to ``--out``, showing a progress bar with the running epsilon.

Data-parallel: launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), every rank joins a
gloo group and trains a ``DistributedDataParallel`` replica (:mod:`privlab.dp.distributed`);
``--batch-size`` stays the expected *global* batch, split evenly over the ranks, so the mechanism
and epsilon are those of the one-process run. Rank 0 shows the progress, evaluates and saves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import typer
from torch import nn
from torch.utils.data import DataLoader

from privlab.cli.errors import cli_errors
from privlab.data.registry import load_dataset
from privlab.dp.checkpoint import save_checkpoint
from privlab.dp.facade import make_private
from privlab.models import MLP, SmallCNN
from privlab.train.fit import accuracy, fit

VISION = ("mnist", "fashion_mnist")


def train(
    dataset: str = typer.Option("mnist", help="Dataset: mnist, fashion_mnist or adult."),
    model: str = typer.Option("cnn", help="Model: cnn (SmallCNN, tanh) or mlp."),
    target_epsilon: float | None = typer.Option(None, help="Target epsilon (the noise is calibrated to it)."),
    noise_multiplier: float | None = typer.Option(None, help="Noise multiplier sigma (instead of --target-epsilon)."),
    delta: float = typer.Option(1e-5, help="Delta of the (epsilon, delta) guarantee."),
    epochs: int = typer.Option(30, help="Epochs (expected passes over the data)."),
    batch_size: int = typer.Option(2048, help="Expected (Poisson) batch size; sample rate = batch size / N."),
    lr: float = typer.Option(4.0, help="SGD learning rate."),
    momentum: float = typer.Option(0.5, help="SGD momentum."),
    lr_schedule: str = typer.Option("cosine", help="Learning-rate schedule: cosine (decay to 0) or constant."),
    max_grad_norm: float = typer.Option(1.0, help="Per-example clipping norm C."),
    clipping: str = typer.Option("ghost", help="Clipping: ghost, flat or per_layer."),
    accountant: str = typer.Option("pld", help="Accountant: pld or rdp."),
    physical_batch_size: int | None = typer.Option(None, help="Split logical batches into chunks of this size."),
    seed: int = typer.Option(0, help="Seed for model init, sampling and noise (not secure; see --secure-rng)."),
    secure_rng: bool = typer.Option(False, help="Draw sampling and noise from the OS CSPRNG."),
    out: Path = typer.Option(..., help="Output directory."),
) -> None:
    """Train a model with DP-SGD and save it with its privacy ledger."""
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in locals().items()}  # the options only
    with cli_errors({"name": "--dataset"}):  # errors name the flags (load_dataset's 'name' is --dataset)
        torch.manual_seed(seed)
        train_set, test_set = load_dataset(dataset, "train"), load_dataset(dataset, "test")
        classes = train_set.num_classes
        net: nn.Module
        if model == "cnn" and dataset in VISION:
            net = SmallCNN(num_classes=classes)
        elif model == "mlp":
            net = MLP(in_features=int(train_set.x[0].numel()), num_classes=classes)
        else:
            raise typer.BadParameter(f"--model {model!r} with --dataset {dataset!r}: use cnn (vision) or mlp")
        ranks = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun
        if batch_size > len(train_set):  # checked here so that the message names the flag, not a per-rank loader
            raise typer.BadParameter(
                f"--batch-size {batch_size} must be at most the size of the {dataset} training set "
                f"({len(train_set)}): it is the expected Poisson batch, so batch size / N is a sample rate"
                + (f" (over all {ranks} ranks together)" if ranks > 1 else "")
            )
        wrapped: nn.Module = net
        per_rank = batch_size
        if ranks > 1:
            if batch_size % ranks:
                raise typer.BadParameter(
                    f"--batch-size {batch_size} must be a multiple of the {ranks} ranks torchrun started (it is the "
                    "expected global batch, split evenly over the ranks)"
                )
            if not dist.is_initialized():
                dist.init_process_group("gloo")
            wrapped, per_rank = nn.parallel.DistributedDataParallel(net), batch_size // ranks
        opt = torch.optim.SGD(wrapped.parameters(), lr=lr, momentum=momentum)
        pt = make_private(
            wrapped,
            opt,
            DataLoader(train_set, batch_size=per_rank),
            noise_multiplier=noise_multiplier,
            target_epsilon=target_epsilon,
            delta=delta,
            epochs=epochs,
            max_grad_norm=max_grad_norm,
            clipping=clipping,
            accountant=accountant,
            physical_batch_size=physical_batch_size,
            seed=seed,
            secure_rng=secure_rng,
        )
    if lr_schedule not in ("cosine", "constant"):
        raise typer.BadParameter(f"--lr-schedule must be cosine or constant, got {lr_schedule!r}")
    steps = epochs * len(pt.data_loader)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)

    def after_step(t: int, loss: torch.Tensor) -> None:
        if lr_schedule == "cosine":  # post-processing: no privacy cost
            sched.step()

    def postfix(loss: torch.Tensor) -> dict[str, str]:
        return {"loss": f"{loss.item():.3f}", "eps": f"{pt.epsilon():.3f}"}

    fit(
        pt.model,
        pt.optimizer,
        pt.data_loader,
        steps=steps,
        after_step=after_step,
        postfix=postfix,
        progress=pt.data_parallel is None or pt.data_parallel.rank == 0,
        desc="DP-SGD",
    )
    pt.optimizer.detach()
    if pt.data_parallel is not None:
        dist.barrier(group=pt.data_parallel.group)
        if pt.data_parallel.rank != 0:  # the replicas are equal: rank 0 evaluates and saves
            return
    acc = accuracy(net, test_set)
    ranks_used = 1 if pt.data_parallel is None else pt.data_parallel.world_size
    config.update(noise_multiplier=pt.noise_multiplier, sample_rate=pt.sample_rate, test_accuracy=acc,
                  ranks=ranks_used)
    save_checkpoint(out, net, pt.accountant.ledger, config)
    typer.echo(json.dumps({"out": str(out), "epsilon": pt.epsilon(), "delta": delta, "test_accuracy": acc,
                           "ranks": ranks_used}))
