"""White-box Dirac gradient canaries for DP-SGD: placement, the training loop, and a closed-form model.

A Dirac canary (Nasr et al. 2023, "Tight Auditing of Differentially Private Machine Learning";
Steinke, Nasr & Jagielski 2023, "Privacy Auditing with One (1) Training Run", Sec. 7) is a gradient
``g = A * C * e_c`` on one parameter coordinate ``c`` with raw norm ``A * C`` (``A > 1``), so a correct
implementation clips it to ``C``. It enters each Poisson batch with the same rate q as the data and
is handed to the target's own :class:`~privlab.dp.DPOptimizer`
(:meth:`~privlab.dp.DPOptimizer.add_per_example_gradients`) *as one example's per-sample gradient*, so
it is clipped, summed, noised (:mod:`privlab.dp.mechanism`), scaled and accounted by the code that
trains the target, with the data going through ``make_private``'s Poisson loader and hooks.

With plain SGD (learning rate ``lr``, Poisson batches normalised by their expected size ``q N``)

    theta_T - theta_0 = -(lr / (q N)) * sum_{t<T} (sum of clipped gradients_t + N(0, sigma^2 C^2 I)),

so once the data's own clipped contribution is removed from every step (the auditor computes it from
theta_t and the batch, :func:`run_dirac_canaries`; on a quiet coordinate, one the data never touches,
it is zero anyway) the canary score is exactly, on any data,

    score = -(theta_T - theta_0)[c] - (lr / (q N)) sum_t data_t[c] = (lr / (q N)) * (C K + sigma C sqrt(T) Z),
    K ~ Binomial(T, q) if the canary is IN, K = 0 if OUT, Z ~ N(0, 1)                     (*)

(:func:`dirac_score_model`). (*) is the closed form the vectorised multi-run extension samples from;
tests check real trainings against it (the "fast path beside a slow, obviously correct one").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F

from privlab.audit.data_part import BatchRecorder, batch_sums, data_part
from privlab.audit.spec import AuditSpec, apply_fault
from privlab.data.dataset import ArrayDataset
from privlab.dp import PrivateTraining, per_sample_gradients
from privlab.train.fit import fit

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


@dataclasses.dataclass(frozen=True)
class DiracTranscript:
    """What the white-box auditor keeps of one training with Dirac canaries, shapes (T, m), gradient units.

    ``raw[t, i] = -(theta_{t+1} - theta_t)[c_i] / s`` is step t's update on canary i's coordinate
    (``s = lr / (q N)``, the step scale, is ``step_scale``) and ``data[t, i]`` the data batch's own
    clipped contribution there as the auditor computes it (zeros if it was not computed).
    ``updates = raw - data`` is ``C b_t + sigma C Z_t`` for a correct implementation (``b_t`` = canary
    i sampled at step t and IN). ``unclipped[t]`` is True where the data's part was taken unclipped
    because that matched the step's update on the other coordinates better (:func:`~privlab.audit.data_part.data_part`).
    """

    raw: npt.NDArray[np.float64]
    data: npt.NDArray[np.float64]
    step_scale: float
    unclipped: npt.NDArray[np.bool_] | None = None

    @property
    def updates(self) -> npt.NDArray[np.float64]:
        """``raw - data``: the canary's own part of each update plus the noise, shape (T, m)."""
        return np.asarray(self.raw - self.data, dtype=np.float64)

    @property
    def final_scores(self) -> npt.NDArray[np.float64]:
        """``s * sum_t updates[t]``: the final-minus-initial score of (*) with the data removed, shape (m,)."""
        return np.asarray(self.step_scale * self.updates.sum(0), dtype=np.float64)

    @property
    def raw_scores(self) -> npt.NDArray[np.float64]:
        """``-(theta_T - theta_0)[c_i]``: the score before issue 14, the data's drift left in, shape (m,)."""
        return np.asarray(self.step_scale * self.raw.sum(0), dtype=np.float64)


def run_dirac_canaries(
    spec: AuditSpec,
    model: nn.Module,
    coords: torch.Tensor,
    included: torch.Tensor,
    *,
    canary_norm_multiplier: float,
    fault: str | None,
    generator: torch.Generator,
    subtract_data: bool = True,
    loss_fn: LossFn = F.cross_entropy,
    progress: bool = False,
) -> tuple[DiracTranscript, PrivateTraining]:
    """Run ``spec``'s DP-SGD (``make_private``) on its data plus Dirac canaries, in place on ``model``.

    ``coords``: (m,) flat coordinates; ``included``: (m,) bool, canary i joins the data iff True.
    Each step: a Poisson batch of the data (rate q) through the optimizer's hooks, a Poisson draw
    (rate q, from ``generator``) of the included canaries added as per-example gradients, then the
    optimizer's step (clipping to C, noise ``sigma C`` unless ``fault`` switches them off, SGD with
    ``lr / (q N)``).

    The auditor sees every iterate theta_t and the data batch B_t, and (``subtract_data=True``)
    removes the data's own contribution ``(sum_{j in B_t} clip_C(g_j(theta_t)))[c_i]`` -- or the
    unclipped sum where that matches the step better on the coordinates no canary uses
    (:mod:`privlab.audit.data_part`) -- from each step's update, so that on *any* coordinate, however
    dense the data's gradients there, a correct implementation gives ``updates[t, i] = C b_t + sigma C Z_t``
    and the final score follows the closed form (*). Soundness does not rest on the subtraction
    being exact: the scores are a function of the released iterates and of the data set, and the
    DP guarantee of DP-SGD covers both (the Poisson-subsampled Gaussian is DP conditional on the
    other examples' batches, which enter each step as a known shift; the batches do not depend on
    the canaries). ``subtract_data=False`` skips computing the data's part (``data`` is then zero).
    """
    A = canary_norm_multiplier
    pt = spec.private_training(model, spec.train)
    apply_fault(pt, fault)
    C, q = pt.max_grad_norm, pt.sample_rate
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    sizes = [params[n].numel() for n in names]
    d = sum(sizes)
    m = coords.numel()
    loader = BatchRecorder(pt.data_loader)
    step_scale = spec.lr / pt.optimizer.expected_batch_size  # SGD: theta_{t+1} = theta_t - lr g~_t
    others = torch.ones(d, dtype=torch.bool)
    others[coords] = False  # the coordinates no canary touches: where the data's rule is read off
    raw_rows: list[torch.Tensor] = []
    data_rows: list[torch.Tensor] = []
    unclipped: list[bool] = []
    before: dict[str, torch.Tensor] = {}

    def canary_rows(hit: torch.Tensor) -> dict[str, torch.Tensor]:
        rows = torch.zeros(hit.numel(), d)
        rows[torch.arange(hit.numel()), coords[hit]] = A * C  # raw norm A*C: must be clipped to C
        parts = torch.split(rows, sizes, dim=1)
        return {n: part.reshape(-1, *params[n].shape) for n, part in zip(names, parts, strict=True)}

    def add_canaries(_: int) -> None:
        # theta_t is still the model's: the step has not been taken
        before["theta"] = flat_params(model).to(torch.float64)
        chunks = loader.take()
        if subtract_data:
            before["clipped"], before["unclipped"] = batch_sums(model, loss_fn, chunks, C, spec.clipping)
        hit = torch.nonzero(included & (torch.rand(m, generator=generator) < q)).squeeze(1)
        for chunk in torch.split(hit, _CHUNK):  # like virtual batches: clipped sums add up
            pt.optimizer.add_per_example_gradients(canary_rows(chunk))

    def record(_: int, __: torch.Tensor) -> None:
        update = -(flat_params(model).to(torch.float64) - before["theta"]) / step_scale  # (d,)
        raw_rows.append(update[coords])
        if subtract_data:
            part, raw_rule = data_part(update, before["clipped"], before["unclipped"], others)
            data_rows.append(part[coords])
            unclipped.append(raw_rule)
        else:
            data_rows.append(torch.zeros(m, dtype=torch.float64))

    try:
        fit(
            pt.model,
            pt.optimizer,
            loader,
            steps=spec.steps,
            loss_fn=loss_fn,
            before_step=add_canaries,
            after_step=record,
            progress=progress,
            desc="DP-SGD with canaries",
        )
    finally:
        pt.optimizer.detach()

    def stacked(rows: list[torch.Tensor]) -> npt.NDArray[np.float64]:
        return np.asarray(torch.stack(rows).numpy() if rows else np.zeros((0, m)), dtype=np.float64)

    rule = np.asarray(unclipped, dtype=bool) if subtract_data else None
    return DiracTranscript(stacked(raw_rows), stacked(data_rows), float(step_scale), rule), pt


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


__all__ = [
    "DiracTranscript",
    "dirac_score_model",
    "flat_params",
    "quiet_coordinates",
    "run_dirac_canaries",
]
