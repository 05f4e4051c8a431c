"""Data-parallel DP-SGD scenarios run in real ranks by the tests (``run_ranks`` needs importable functions).

Each takes ``(rank, world_size, ...)`` inside an initialised gloo group and returns plain tensors.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from privlab.dp import PrivateTraining, make_private
from privlab.dp.checkpoint import save_checkpoint

N_TOY = 64
TINY_BUCKETS = 1e-6  # bucket_cap_mb of about one byte: every parameter in a bucket of its own


def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    """64 fixed examples of 6 features, 3 classes."""
    g = torch.Generator().manual_seed(7)
    return torch.randn(N_TOY, 6, generator=g), torch.randint(0, 3, (N_TOY,), generator=g)


def toy_model() -> nn.Module:
    """An MLP with a LayerNorm (Linear, LayerNorm and bias rules all used), same weights every call."""
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.Tanh(), nn.Linear(16, 3))


def one_step(model: nn.Module, clipping: str, batch_size: int, indices: list[int]) -> dict[str, torch.Tensor]:
    """One noiseless DP-SGD step (SGD, lr 1, C = 0.5) of ``model`` on the toy examples ``indices``."""
    x, y = toy_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    pt = make_private(model, torch.optim.SGD(model.parameters(), lr=1.0), loader, noise_multiplier=1.0,
                      max_grad_norm=0.5, clipping=clipping, seed=0)
    pt.optimizer.add_noise_enabled = False
    pt.optimizer.zero_grad()
    F.cross_entropy(pt.model(x[indices]), y[indices]).backward()
    pt.optimizer.step()
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return {k: v.detach().clone() for k, v in inner.state_dict().items()}


def ddp(model: nn.Module, bucket_cap_mb: float | None = None, **kwargs: Any) -> nn.parallel.DistributedDataParallel:
    """``model`` in DistributedDataParallel, with DDP's default buckets or ``bucket_cap_mb``."""
    if bucket_cap_mb is not None:
        kwargs["bucket_cap_mb"] = bucket_cap_mb
    return nn.parallel.DistributedDataParallel(model, **kwargs)


def ddp_one_step(
    rank: int, world: int, clippings: list[str], per_rank_batch: int, indices: list[int],
    bucket_cap_mb: float | None = None,
) -> dict[str, Any]:
    """:func:`one_step` with a DDP model for each clipping mode: this rank takes ``indices[rank::world]``."""
    out = {}
    for clipping in clippings:
        out[clipping] = one_step(ddp(toy_model(), bucket_cap_mb), clipping, per_rank_batch, indices[rank::world])
        # one example in all: every rank but rank 0 steps on an empty batch
        out[f"{clipping}, one example"] = one_step(
            ddp(toy_model(), bucket_cap_mb), clipping, per_rank_batch, indices[:1][rank::world]
        )
    return out


class TwiceMLP(nn.Module):
    """Linear, LayerNorm, a hidden Linear called twice (its sum is final only at ``step()``), Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(11)
        self.inp, self.norm = nn.Linear(6, 16), nn.LayerNorm(16)
        self.mid, self.out = nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.norm(self.inp(x)))
        return self.out(torch.tanh(self.mid(torch.tanh(self.mid(h)))))  # type: ignore[no-any-return]


def overlapped_training(rank: int, world: int, bucket_cap_mb: float | None) -> dict[str, Any]:
    """Three noiseless per-layer logical batches (virtual batches of 3) of :class:`TwiceMLP` on DDP.

    Returns the final weights and, per closing chunk, how many of the step's all-reduces were already
    launched when the backward pass returned (per-layer clipping hands finished layers over early).
    """
    model = TwiceMLP()
    net = ddp(model, bucket_cap_mb)
    x, y = toy_data()
    pt = make_private(net, torch.optim.SGD(net.parameters(), lr=0.5), DataLoader(TensorDataset(x, y), batch_size=8),
                      noise_multiplier=1.0, clipping="per_layer", physical_batch_size=3, steps=3, seed=2)
    pt.optimizer.add_noise_enabled = False
    assert pt.optimizer.allreduce is not None
    early: list[int] = []
    for xb, yb in pt.data_loader:
        closing = pt.optimizer.closes_logical_batch
        pt.optimizer.zero_grad()
        F.cross_entropy(pt.model(xb), yb).backward()
        if closing:
            early.append(len(pt.optimizer.allreduce.works))
        pt.optimizer.step()
        if len(early) == 3 and closing:
            break
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "early": early,
            "buckets": len(pt.optimizer.allreduce.buckets)}


def noise_steps(
    rank: int, world: int, steps: int, every_rank_adds_noise: bool = False, checkpoint: str | None = None,
    clipping: str = "flat", bucket_cap_mb: float | None = None,
) -> dict[str, Any]:
    """``steps`` DP-SGD steps through the private loader (virtual batches of 3) with a zero loss, so each
    update is pure noise.

    Linear(50, 40) without bias (with one with ``bucket_cap_mb``, so that per-layer clipping sends the
    bias during the backward pass), N = 160, per-rank batch 8, sigma = 1, C = 1: the global expected
    batch is 8 W and ``.grad = N(0, 1) / (8 W)`` per entry if the noise is drawn once.
    ``every_rank_adds_noise`` (a negative control) makes every rank noise every coordinate.
    Returns the gradients of each step (weight, then bias, flattened), the dataset indices each step
    sampled, and the final weight; rank 0 saves the DDP model to ``checkpoint`` if given.
    """
    torch.manual_seed(3)
    model = nn.Linear(50, 40, bias=bucket_cap_mb is not None)
    net = ddp(model, bucket_cap_mb)
    n = 160
    data = TensorDataset(torch.zeros(n, 50), torch.arange(n))
    pt = make_private(net, torch.optim.SGD(net.parameters(), lr=0.1), DataLoader(data, batch_size=8),
                      noise_multiplier=1.0, max_grad_norm=1.0, steps=steps, seed=5, physical_batch_size=3,
                      clipping=clipping)
    if every_rank_adds_noise:
        assert pt.optimizer.allreduce is not None
        pt.optimizer.allreduce.par = replace(pt.optimizer.allreduce.par, rank=0, world_size=1)
    grads: list[torch.Tensor] = []
    seen: list[list[int]] = [[]]
    for x, idx in pt.data_loader:  # virtual batches of at most 3 examples
        closing = pt.optimizer.closes_logical_batch
        pt.optimizer.zero_grad()
        (pt.model(x) * 0.0).sum().backward()
        pt.optimizer.step()
        seen[-1] += idx.tolist()
        if closing:
            grads.append(torch.cat([p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]))
            if len(grads) == steps:
                break
            seen.append([])
    if checkpoint is not None and rank == 0:
        save_checkpoint(checkpoint, net, pt.accountant.ledger)
    return {"grads": torch.stack(grads), "indices": seen, "weight": model.weight.detach().clone(),
            "sample_rate": pt.sample_rate, "epsilon": pt.epsilon()}


def toy_private(
    batch_size: int = 8, data: tuple[torch.Tensor, torch.Tensor] | None = None, static_graph: bool = False,
    bucket_cap_mb: float | None = None, **kwargs: Any,
) -> PrivateTraining:
    """``make_private`` (sigma 1, SGD lr 1) on a DDP toy model and the toy data (or ``data``)."""
    x, y = toy_data() if data is None else data
    net = ddp(toy_model(), bucket_cap_mb, static_graph=static_graph)
    return make_private(net, torch.optim.SGD(net.parameters(), lr=1.0),
                        DataLoader(TensorDataset(x, y), batch_size=batch_size), **{"noise_multiplier": 1.0, **kwargs})


def disagreeing_clip(rank: int, world: int) -> None:
    """Rank 1 asks for another clipping norm: ``make_private`` must refuse on every rank."""
    toy_private(max_grad_norm=1.0 if rank == 0 else 2.0)


def rank_dies_before_step(rank: int, world: int, clipping: str = "flat", bucket_cap_mb: float | None = None) -> None:
    """The last rank exits abruptly after its backward pass; the others must fail at ``step()``, not hang."""
    x, y = toy_data()
    pt = toy_private(clipping=clipping, bucket_cap_mb=bucket_cap_mb)
    F.cross_entropy(pt.model(x[:4]), y[:4]).backward()
    if rank == world - 1:
        os._exit(3)
    pt.optimizer.step()


def refusals(rank: int, world: int) -> list[str]:
    """The messages of the settings ``make_private`` refuses with a DDP model."""
    msgs = []
    cases: list[dict[str, Any]] = [{"poisson_sampling": False}, {"batch_size": N_TOY}, {"static_graph": True}]
    for kwargs in cases:
        try:
            toy_private(**kwargs)
            msgs.append("accepted")
        except Exception as exc:
            msgs.append(f"{type(exc).__name__}: {exc}")
    return msgs


def one_rank_refused(rank: int, world: int) -> None:
    """Rank 1 passes a bad ``clipping``: it raises its own error and every other rank stops too."""
    toy_private(clipping="flat" if rank == 0 else "fast")


def one_rank_fails_in_step(
    rank: int, world: int, clipping: str = "flat", bucket_cap_mb: float | None = None
) -> dict[str, Any]:
    """The last rank unfreezes a parameter after ``make_private`` (its ``step()`` refuses): every rank must
    raise at that step, none may wait, and no rank may apply an update."""
    x, y = toy_data()
    model = toy_model()
    assert isinstance(model, nn.Sequential)
    net = ddp(model, bucket_cap_mb)
    first, last = model[0], model[3]
    assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
    last.bias.requires_grad_(False)
    pt = make_private(net, torch.optim.SGD(net.parameters(), lr=1.0), DataLoader(TensorDataset(x, y), batch_size=8),
                      noise_multiplier=1.0, clipping=clipping)
    before = first.weight.detach().clone()
    if rank == world - 1:
        last.bias.requires_grad_(True)
    pt.optimizer.zero_grad()
    F.cross_entropy(pt.model(x[rank::world][:4]), y[rank::world][:4]).backward()
    try:
        pt.optimizer.step()
    except Exception as exc:  # the test reads the type and message
        return {"error": f"{type(exc).__name__}: {exc}", "unchanged": bool(torch.equal(before, first.weight))}
    return {"error": None}


def one_rank_has_a_nan_example(
    rank: int, world: int, clipping: str = "flat", bucket_cap_mb: float | None = None
) -> dict[str, Any]:
    """The last rank's batch holds one NaN input: every rank must refuse that step (the all-reduced sum is
    NaN on all of them) without recording or applying it, then take the next, finite step together."""
    x, y = toy_data()
    model = toy_model()
    net = ddp(model, bucket_cap_mb)
    pt = make_private(net, torch.optim.SGD(net.parameters(), lr=1.0), DataLoader(TensorDataset(x, y), batch_size=8),
                      noise_multiplier=1.0, clipping=clipping, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    xb, yb = x[rank::world][:4].clone(), y[rank::world][:4]
    if rank == world - 1:
        xb[2, 0] = float("nan")
    error = None
    pt.optimizer.zero_grad()
    F.cross_entropy(pt.model(xb), yb).backward()
    try:
        pt.optimizer.step()
    except Exception as exc:  # the test reads the type
        error = type(exc).__name__
    unchanged = all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    refused_steps = pt.accountant.steps
    pt.optimizer.zero_grad()
    F.cross_entropy(pt.model(x[rank::world][:4]), y[rank::world][:4]).backward()
    pt.optimizer.step()
    return {"error": error, "unchanged": unchanged, "refused_steps": refused_steps, "steps": pt.accountant.steps,
            "weight": next(model.parameters()).detach().clone()}


def rank_ordered_dataset(rank: int, world: int) -> None:
    """Each rank holds the same examples in another order: shards by position would overlap."""
    x, y = toy_data()
    order = torch.randperm(N_TOY, generator=torch.Generator().manual_seed(rank))
    toy_private(data=(x[order], y[order]))


def fails_mid_logical_batch_then_continues(
    rank: int, world: int, clipping: str = "flat", bucket_cap_mb: float | None = None
) -> dict[str, Any]:
    """Virtual batches of 2; the last rank's step fails on the first chunk of the first logical batch (a
    frozen parameter of its optimizer gets a gradient) and the loop catches it and goes on. The ranks'
    collectives must stay paired: both raise at the first logical batch, finish three, and end equal."""
    torch.manual_seed(3)
    model = nn.Linear(6, 3)
    net = ddp(model, bucket_cap_mb)
    extra = nn.Parameter(torch.zeros(1), requires_grad=False)
    x, y = toy_data()
    opt = torch.optim.SGD([*net.parameters(), extra], lr=0.5)
    pt = make_private(net, opt, DataLoader(TensorDataset(x, y), batch_size=8), noise_multiplier=1.0,
                      physical_batch_size=2, seed=1, clipping=clipping)
    errors: list[str] = []
    closed, failed_on_closing = 0, None
    for chunk, (xb, yb) in enumerate(pt.data_loader):
        closing = pt.optimizer.closes_logical_batch
        pt.optimizer.zero_grad()
        F.cross_entropy(pt.model(xb), yb).backward()
        extra.grad = torch.ones(1) if rank == world - 1 and chunk == 0 else None
        if extra.grad is not None:
            failed_on_closing = closing
        try:
            pt.optimizer.step()
        except Exception as exc:  # the test reads the types
            errors.append(type(exc).__name__)
        closed += closing
        if closed == 3:
            break
    return {"errors": errors, "weight": model.weight.detach().clone(), "closed": closed,
            "failed_on_closing": failed_on_closing, "steps": pt.accountant.steps}


def replicas_that_would_diverge(rank: int, world: int) -> dict[str, str]:
    """``make_private`` with rank 1 on another learning rate, then with rank 1's weights changed after DDP
    was built, then (with equal ranks) a forward pass inside ``DDP.join()``; an equal pair is the control.

    Returns the message (or "accepted") of each case.
    """
    x, y = toy_data()
    out: dict[str, str] = {}

    def attempt(case: str, lr: float, shift: float, join: bool = False) -> None:
        model = toy_model()
        net = ddp(model)
        with torch.no_grad():
            model[0].weight.add_(shift)  # type: ignore[index, operator]
        try:
            pt = make_private(net, torch.optim.SGD(net.parameters(), lr=lr),
                              DataLoader(TensorDataset(x, y), batch_size=8), noise_multiplier=1.0)
            if join:
                with net.join():
                    pt.model(x[:2])
            out[case] = "accepted"
        except Exception as exc:  # the test reads the type and message
            out[case] = f"{type(exc).__name__}: {exc}"

    attempt("lr", 0.1 if rank == 0 else 0.5, 0.0)
    attempt("weights", 0.1, 0.3 if rank == 1 else 0.0)
    attempt("equal", 0.1, 0.0)
    attempt("join", 0.1, 0.0, join=True)
    return out
