"""White-box Dirac gradient canaries for DP-SGD: placement, the training loop, and a closed-form model.

A Dirac canary (Nasr et al. 2023, "Tight Auditing of Differentially Private Machine Learning";
Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run", Sec. 7) is a gradient
``g = A * C * e_c`` on one parameter coordinate ``c`` with raw norm ``A * C`` (``A > 1``), so a correct
implementation clips it to ``C``. It enters each Poisson batch with the same rate q as the data and
is processed *as one example's per-sample gradient* by :func:`privlab.dp.clip_gradients` and
:func:`privlab.dp.add_noise`, the functions DP-SGD itself uses.

With plain SGD (learning rate ``lr``, Poisson batches normalised by their expected size ``q N``)

    theta_T - theta_0 = -(lr / (q N)) * sum_{t<T} (sum of clipped gradients_t + N(0, sigma^2 C^2 I)),

so on a quiet coordinate (one the data's gradients never touch) the canary score is exactly

    score = -(theta_T - theta_0)[c] = (lr / (q N)) * (C K + sigma C sqrt(T) Z),
    K ~ Binomial(T, q) if the canary is IN, K = 0 if OUT, Z ~ N(0, 1)                     (*)

(:func:`dirac_score_model`). (*) is the closed form the vectorised multi-run extension samples from;
tests check real trainings against it (the "fast path beside a slow, obviously correct one").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm.auto import tqdm

from privlab.data.dataset import ArrayDataset
from privlab.dp import add_noise, clip_gradients, per_sample_gradients

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_CHUNK = 256  # canary rows per clipping call: bounds memory at _CHUNK x (number of parameters)


def flat_params(model: nn.Module) -> torch.Tensor:
    """All trainable parameters concatenated, shape ``(d,)`` (a detached copy)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]).clone()


def quiet_coordinates(
    model: nn.Module,
    loss_fn: LossFn,
    data: ArrayDataset,
    m: int,
    generator: torch.Generator,
    probe: int = 1024,
) -> torch.Tensor:
    """The ``m`` flat parameter coordinates the data's gradients touch least (ties broken at random).

    Real gradients on a canary's coordinate act as noise for the auditor, so canaries go where the
    data is quiet (for an MLP on MNIST: first-layer weights of always-black pixels, whose gradient is
    exactly zero). Chosen before the canaries' inclusion is drawn, so it cannot bias the test.
    """
    idx = torch.randperm(len(data), generator=generator)[: min(probe, len(data))]
    per = per_sample_gradients(model, loss_fn, data.x[idx], data.y[idx])
    mag = torch.cat([per[n].abs().sum(0).reshape(-1) for n, p in model.named_parameters() if p.requires_grad])
    jitter = torch.rand(mag.shape, generator=generator) * 1e-12  # random order among exact ties
    return torch.argsort(mag + jitter)[:m]


def train_with_dirac_canaries(
    model: nn.Module,
    loss_fn: LossFn,
    train: ArrayDataset,
    coords: torch.Tensor,
    included: torch.Tensor,
    *,
    sample_rate: float,
    steps: int,
    noise_multiplier: float,
    max_grad_norm: float,
    lr: float,
    canary_norm_multiplier: float,
    fault: str | None,
    generator: torch.Generator,
    progress: bool = False,
) -> npt.NDArray[np.float64]:
    """Run DP-SGD on ``train`` plus Dirac canaries (in place on ``model``); return the canary scores.

    ``coords``: (m,) flat coordinates; ``included``: (m,) bool, canary i joins the data iff True.
    Each step: Poisson batch of the data (rate q), Poisson draw of the included canaries (rate q),
    per-sample gradients, flat clipping to C of real and canary rows alike (unless
    ``fault == "no_clipping"``), Gaussian noise ``sigma C`` (unless ``fault == "no_noise"``), SGD step
    with ``lr / (q N)``. Returns ``score_i = -(theta_T - theta_0)[coords_i]``, shape (m,).
    """
    q, C, A = sample_rate, max_grad_norm, canary_norm_multiplier
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    sizes = [params[n].numel() for n in names]
    d = sum(sizes)
    m = coords.numel()
    theta0 = flat_params(model)
    N = len(train)
    norm = 1.0 / (q * N)  # Poisson batches are normalised by their expected size

    def canary_rows(hit: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = torch.zeros(hit.numel(), d)
        rows[torch.arange(hit.numel()), coords[hit]] = A * C  # raw norm A*C: must be clipped to C
        parts = torch.split(rows, sizes, dim=1)
        return {n: part.reshape(-1, *params[n].shape) for n, part in zip(names, parts, strict=True)}

    def clip_and_sum(per: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if fault == "no_clipping":
            return {k: v.sum(0) for k, v in per.items()}
        return clip_gradients(per, C, "flat")

    for _ in tqdm(range(steps), desc="DP-SGD with canaries", disable=not progress, leave=False):
        idx = torch.nonzero(torch.rand(N, generator=generator) < q).squeeze(1)
        summed = clip_and_sum(per_sample_gradients(model, loss_fn, train.x[idx], train.y[idx]))
        hit = torch.nonzero(included & (torch.rand(m, generator=generator) < q)).squeeze(1)
        for chunk in torch.split(hit, _CHUNK):  # like virtual batches: clipped sums add up
            for k, v in clip_and_sum(canary_rows(chunk)).items():
                summed[k] = summed[k] + v
        if fault != "no_noise":
            summed = add_noise(summed, noise_multiplier * C, generator=generator)
        with torch.no_grad():
            for name in names:
                params[name].sub_(lr * norm * summed[name])
    return np.asarray(-(flat_params(model) - theta0)[coords].numpy(), dtype=np.float64)


def dirac_score_model(
    included: npt.ArrayLike,
    *,
    sample_rate: float,
    steps: int,
    noise_multiplier: float,
    max_grad_norm: float,
    lr: float,
    train_size: int,
    canary_norm_multiplier: float,
    fault: str | None,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Sample canary scores from the closed form (*) of the module docstring, vectorised over canaries/runs.

    Exact for canaries on coordinates the data never touches (always-zero inputs); ``fault`` changes
    the canary's per-step contribution to ``A C`` ("no_clipping") or drops ``Z`` ("no_noise").
    Output shape: ``included``'s shape.
    """
    inc = np.asarray(included, dtype=bool)
    C = max_grad_norm
    per_step = canary_norm_multiplier * C if fault == "no_clipping" else C
    k = np.where(inc, rng.binomial(steps, sample_rate, inc.shape), 0)
    noise = 0.0 if fault == "no_noise" else noise_multiplier * C * np.sqrt(steps) * rng.standard_normal(inc.shape)
    scale = lr / (sample_rate * train_size)
    return np.asarray(scale * (per_step * k + noise), dtype=np.float64)


__all__ = ["dirac_score_model", "flat_params", "quiet_coordinates", "train_with_dirac_canaries"]
