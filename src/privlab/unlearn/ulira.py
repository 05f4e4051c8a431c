"""U-LiRA (Hayes, Shumailov, Triantafillou, Khalifa, Papernot 2024, "Inexact Unlearning Needs More
Careful Evaluations to Avoid a False Sense of Privacy"): a per-example likelihood-ratio test of
"was this example trained on and then unlearned" against "was it never trained on".

Layout (all K shadow models share one population, the training set; F = the forget candidates):
shadow k trains on ``R_k + F_k`` (``R_k``: each non-candidate row with probability 1/2; ``F_k``: a
random half of the candidates -- ``floor(|F|/2)`` of them, by a random permutation -- with shadows
``2i`` and ``2i + 1`` complementary on F, so every candidate is in exactly K/2 of them and no half
is empty) and then unlearns ``F_k`` with the method under test. For
each candidate x, the shadows with ``x in F_k`` give the "unlearned" distribution of x's scaled
logit ``phi`` and the others the "retrained" one (they never saw x). Each shadow is attacked in
turn with the K - 2 shadows outside its pair as references -- K/2 - 1 on each side for every
candidate; leaving out the target alone would leave its own side one model short, a bias
towards "the other side" that pushes the AUC of an exact method below 1/2. LiRA online
(Carlini et al. 2022; :class:`privlab.attacks.LiRA`) fits the two Gaussians per example and
scores ``log N(phi; mu_U, s_U^2) - log N(phi; mu_R, s_R^2)``. The K x |F| scores, labelled by
``x in F_k``, give TPR at low FPR with bootstrap intervals (:func:`privlab.attacks.evaluate_scores`).
A perfect unlearning method leaves the two distributions identical: TPR = FPR (chance).

The originals are trained as one vectorised :func:`privlab.train.train_ensemble` when the method
uses plain training (and the retrain method's shadows are themselves an ensemble on ``R_k``);
SISA and certified removal train theirs one by one with their own trainers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from privlab._validation import check_int
from privlab.attacks import AttackMetrics, LiRA, compute_signals, evaluate_scores
from privlab.data import ArrayDataset, membership_mask
from privlab.errors import InvalidParameterError
from privlab.train import init_model, model_seed, train_ensemble
from privlab.unlearn.base import UnlearnConfig, get_method, train_plain, unlearn

FPRS = (0.1, 0.05, 0.01)


@dataclass(frozen=True)
class ULiRAConfig:
    """Shadow count (even, >= 6: two references per side), bootstrap size and seed of a U-LiRA evaluation."""

    shadows: int = 16
    n_bootstrap: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.shadows, "shadows", "ULiRAConfig", low=6)
        if self.shadows % 2:
            raise InvalidParameterError(
                f"The 'shadows' parameter of ULiRAConfig must be even (balanced forget halves). Got {self.shadows}."
            )
        check_int(self.n_bootstrap, "n_bootstrap", "ULiRAConfig", low=0)
        check_int(self.seed, "seed", "ULiRAConfig", low=0)


@dataclass(frozen=True)
class ULiRAResult:
    """Pooled U-LiRA metrics (TPR at FPR 10/5/1% with intervals, AUC, ROC) of one method."""

    method: str
    metrics: AttackMetrics
    shadows: int
    candidates: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "shadows": self.shadows,
            "candidates": self.candidates,
            "seconds": self.seconds,
            **self.metrics.to_dict(),
        }


def shadow_masks(n: int, forget_index: np.ndarray, shadows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, n) training masks ``R_k + F_k`` and (K, n) forget masks ``F_k`` (pairs ``2i, 2i+1`` complementary on F).

    Each pair splits the m candidates by a fresh random permutation into ``floor(m/2)`` (shadow
    ``2i``) and ``ceil(m/2)`` (shadow ``2i + 1``), so no forget half is empty when m >= 2 (an
    independent coin per candidate leaves one empty with probability ``2^(1-m)`` per pair).
    """
    cand = np.zeros(n, dtype=bool)
    cand[forget_index] = True
    train = membership_mask(shadows, n, seed=seed) & ~cand
    m = len(forget_index)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    half = np.zeros((shadows // 2, m), dtype=bool)
    for i in range(shadows // 2):
        half[i, rng.permutation(m)[: m // 2]] = True
    f_half = np.empty((shadows, m), dtype=bool)
    f_half[0::2], f_half[1::2] = half, ~half
    forget = np.zeros((shadows, n), dtype=bool)
    forget[:, forget_index] = f_half
    return train | forget, forget


def _originals(
    method: str | None,
    factory: Callable[[], nn.Module],
    train: ArrayDataset,
    masks: np.ndarray,
    config: UnlearnConfig,
    progress: bool,
) -> list[nn.Module]:
    m = get_method(method) if method is not None else None
    if m is None or m.train is train_plain:
        ens = train_ensemble(factory, train, masks, config.train, progress=progress)
        return ens.models
    seeds = [model_seed(config.train.seed, k) for k in range(len(masks))]
    return [
        m.train(
            init_model(factory, s),
            train.subset(torch.from_numpy(row)),
            replace(config, train=replace(config.train, seed=s)),
        )
        for row, s in tqdm(list(zip(masks, seeds, strict=True)), disable=not progress, desc="shadow originals")
    ]


def ulira(
    method: str | None,
    factory: Callable[[], nn.Module],
    train: ArrayDataset,
    forget_index: np.ndarray,
    config: UnlearnConfig,
    ucfg: ULiRAConfig = ULiRAConfig(),
    *,
    progress: bool = False,
) -> ULiRAResult:
    """U-LiRA of ``method`` (``None``: no unlearning at all, the positive control) on the candidates
    ``train[forget_index]``."""
    start = time.perf_counter()
    idx = np.asarray(forget_index, dtype=np.int64)
    if len(idx) < 2:
        raise InvalidParameterError(
            f"The 'forget_index' parameter of ulira must hold at least 2 candidates. Got {len(idx)} instead."
        )
    masks, fmasks = shadow_masks(len(train), idx, ucfg.shadows, ucfg.seed)
    if method == "retrain":  # retraining on R_k is the unlearned model: one vectorised ensemble
        ens = train_ensemble(factory, train, masks & ~fmasks, config.train, progress=progress)
        models = ens.models
    else:
        models = _originals(method, factory, train, masks, config, progress)
        if method is not None:
            t = torch.from_numpy
            models = [
                unlearn(m, train.subset(t(f)), train.subset(t(row & ~f)), replace(config, method=method)).model
                for m, row, f in tqdm(
                    list(zip(models, masks, fmasks, strict=True)), disable=not progress, desc=f"unlearn {method}"
                )
            ]
    cand = train.subset(torch.from_numpy(idx))
    sig = compute_signals(models, cand)
    member = fmasks[:, idx]  # (K, m): x was trained on, then unlearned
    scores = np.empty(member.shape)
    K = ucfg.shadows
    for k in range(K):
        others = [j for j in range(K) if j // 2 != k // 2]  # not the target, nor its complementary partner
        att = LiRA(online=True).fit(sig.select(others), member[others])
        scores[k] = att.score(sig.select([k]))
    metrics = evaluate_scores(
        scores.reshape(-1), member.reshape(-1), fprs=FPRS, n_bootstrap=ucfg.n_bootstrap, seed=ucfg.seed
    )
    return ULiRAResult(method or "original", metrics, K, len(idx), time.perf_counter() - start)
