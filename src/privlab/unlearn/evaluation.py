"""Evaluate an unlearning method against the model retrained without the forget set.

Criteria (MUSE, Shi et al. 2024, six-way evaluation, adapted to classifiers; U-LiRA from Hayes et
al. 2024), each reported for the unlearned, the retrained and the original model:

1. memorisation of the forget set: accuracy and mean loss on it (a good method matches retrain);
2. privacy leakage: PrivLeak = ``(AUC_unlearn - AUC_retrain) / AUC_retrain``, where AUC is the
   LOSS attack's (score ``-loss``) AUC of forget vs held-out rows (MUSE, Sec. 3; about 0 for a
   method indistinguishable from retraining, > 0 under-unlearned, < 0 over-unlearned); and the
   per-example U-LiRA (:mod:`privlab.unlearn.ulira`) when asked for;
3. utility: accuracy on the retain and the test set;
4. cost: wall time of the removal over that of retraining, and the fraction of the training data
   retrained (SISA: the affected shards' stages);
5. scaling with the forget-set size (:func:`scaling`);
6. a sequence of removal requests (:func:`sequence`): utility and leakage after each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from privlab._json import jsonable
from privlab._validation import check_choice, check_int, check_real
from privlab.attacks import AttackMetrics, evaluate_scores
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.train import init_model
from privlab.unlearn.base import UnlearnConfig, attach_factory, forget_split, get_method, train_plain, unlearn
from privlab.unlearn.ulira import ULiRAConfig, ULiRAResult, ulira

FORGET_KINDS = ("random", "class")


def choose_forget(
    train: ArrayDataset, fraction: float, kind: str = "random", seed: int = 0, cls: int = 0
) -> np.ndarray:
    """Sorted row indices of a forget set: ``fraction`` of ``train`` drawn at random, or (``kind="class"``)
    drawn from the rows of class ``cls`` only (all of them if the class is smaller)."""
    check_real(fraction, "fraction", "choose_forget", low=0.0, high=1.0, low_open=True, high_open=True)
    check_choice(kind, "kind", "choose_forget", FORGET_KINDS)
    rng = np.random.default_rng(seed)
    k = max(1, round(fraction * len(train)))
    pool = np.arange(len(train)) if kind == "random" else np.flatnonzero(train.y.numpy() == cls)
    if len(pool) == 0:
        raise InvalidParameterError(
            f"The 'cls' parameter of choose_forget must be a class present in train. Got {cls}."
        )
    return np.sort(rng.choice(pool, size=min(k, len(pool)), replace=False))


def per_example_loss(model: nn.Module, data: ArrayDataset, batch: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(loss, correct) per row of ``data``."""
    model.eval()
    losses, correct = [], []
    with torch.no_grad():
        for i in range(0, len(data), batch):
            z = model(data.x[i : i + batch])
            y = data.y[i : i + batch]
            losses.append(F.cross_entropy(z, y, reduction="none"))
            correct.append(z.argmax(1) == y)
    return torch.cat(losses).double().numpy(), torch.cat(correct).numpy()


@dataclass(frozen=True)
class ModelScores:
    """Forget / retain / test accuracy, forget loss and the forget-vs-held-out LOSS-attack AUC of one model."""

    forget_accuracy: float
    forget_loss: float
    retain_accuracy: float
    test_accuracy: float
    mia: AttackMetrics = field(repr=False)

    @property
    def mia_auc(self) -> float:
        return self.mia.auc

    def to_dict(self) -> dict[str, Any]:
        return {
            "forget_accuracy": self.forget_accuracy,
            "forget_loss": self.forget_loss,
            "retain_accuracy": self.retain_accuracy,
            "test_accuracy": self.test_accuracy,
            "mia_auc": self.mia.auc,
            "mia_auc_ci": list(self.mia.auc_ci),
        }


def score_model(
    model: nn.Module, forget: ArrayDataset, retain: ArrayDataset, test: ArrayDataset, n_bootstrap: int = 200
) -> ModelScores:
    lf, cf = per_example_loss(model, forget)
    lt, ct = per_example_loss(model, test)
    _, cr = per_example_loss(model, retain)
    member = np.r_[np.ones(len(lf), bool), np.zeros(len(lt), bool)]
    mia = evaluate_scores(-np.r_[lf, lt], member, n_bootstrap=n_bootstrap)
    return ModelScores(float(cf.mean()), float(lf.mean()), float(cr.mean()), float(ct.mean()), mia)


def privleak(auc_unlearn: float, auc_retrain: float) -> float:
    """MUSE's PrivLeak: ``(AUC_unlearn - AUC_retrain) / AUC_retrain``."""
    return (auc_unlearn - auc_retrain) / auc_retrain


@dataclass(frozen=True)
class UnlearnEvaluation:
    """All criteria of one method on one forget set (see the module docstring)."""

    method: str
    kind: str
    n_train: int
    n_forget: int
    forget_kind: str
    unlearned: ModelScores
    retrained: ModelScores
    original: ModelScores
    privleak: float
    privleak_ci: tuple[float, float]
    privleak_original: float
    seconds_unlearn: float
    seconds_retrain: float
    fraction_retrained: float
    gradient_steps: int
    examples_processed: int
    ulira: ULiRAResult | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def time_ratio(self) -> float:
        """Wall time of the removal over that of retraining from scratch."""
        return self.seconds_unlearn / max(self.seconds_retrain, 1e-9)

    @property
    def forget_accuracy_gap(self) -> float:
        """Forget accuracy of the unlearned model minus that of the retrained one (0 is ideal)."""
        return self.unlearned.forget_accuracy - self.retrained.forget_accuracy

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(
            {
                "method": self.method,
                "kind": self.kind,
                "n_train": self.n_train,
                "n_forget": self.n_forget,
                "forget_kind": self.forget_kind,
                "memorisation": {
                    "forget_accuracy": self.unlearned.forget_accuracy,
                    "forget_loss": self.unlearned.forget_loss,
                    "forget_accuracy_retrain": self.retrained.forget_accuracy,
                    "forget_loss_retrain": self.retrained.forget_loss,
                    "forget_accuracy_original": self.original.forget_accuracy,
                    "forget_accuracy_gap": self.forget_accuracy_gap,
                },
                "leakage": {
                    "privleak": self.privleak,
                    "privleak_ci": list(self.privleak_ci),
                    "privleak_original": self.privleak_original,
                    "mia_auc": self.unlearned.mia_auc,
                    "mia_auc_retrain": self.retrained.mia_auc,
                    "mia_auc_original": self.original.mia_auc,
                    "ulira": self.ulira.to_dict() if self.ulira is not None else None,
                },
                "utility": {
                    "retain_accuracy": self.unlearned.retain_accuracy,
                    "test_accuracy": self.unlearned.test_accuracy,
                    "retain_accuracy_retrain": self.retrained.retain_accuracy,
                    "test_accuracy_retrain": self.retrained.test_accuracy,
                    "test_accuracy_original": self.original.test_accuracy,
                },
                "cost": {
                    "seconds_unlearn": self.seconds_unlearn,
                    "seconds_retrain": self.seconds_retrain,
                    "time_ratio": self.time_ratio,
                    "fraction_retrained": self.fraction_retrained,
                    "gradient_steps": self.gradient_steps,
                    "examples_processed": self.examples_processed,
                },
                "details": self.details,
            }
        )
        return out


Factory = Callable[[], nn.Module]


def _timed_train(method: str, factory: Factory, data: ArrayDataset, config: UnlearnConfig) -> tuple[nn.Module, float]:
    t = time.perf_counter()
    m = get_method(method).train(attach_factory(init_model(factory, config.train.seed), factory), data, config)
    return attach_factory(m, factory), time.perf_counter() - t


def evaluate(
    method: str,
    factory: Factory,
    train: ArrayDataset,
    forget_index: np.ndarray,
    test: ArrayDataset,
    config: UnlearnConfig,
    *,
    ulira_config: ULiRAConfig | None = None,
    forget_kind: str = "random",
    original: nn.Module | None = None,
    retrained: tuple[nn.Module, float] | None = None,
    n_bootstrap: int = 200,
    progress: bool = False,
) -> UnlearnEvaluation:
    """Train the original (``get_method(method).train``) on ``train`` and the reference retrained
    on ``train`` minus ``forget_index`` the same way, unlearn, and score all three.

    ``original`` / ``retrained`` (model, seconds) can be passed to share them across methods that
    train alike. With ``ulira_config``, U-LiRA's shadow models are trained too (the costly part).
    """
    cfg = replace(config, method=method)
    split = forget_split(train, forget_index)
    if original is None:
        original, _ = _timed_train(method, factory, train, cfg)
    if retrained is None:
        retrained = _timed_train(method, factory, split.retain, cfg)
    gold, t_re = retrained
    res = unlearn(original, split.forget, split.retain, cfg)
    su = score_model(res.model, split.forget, split.retain, test, n_bootstrap)
    sr = score_model(gold, split.forget, split.retain, test, n_bootstrap)
    so = score_model(original, split.forget, split.retain, test, n_bootstrap)
    ul = ulira(method, factory, train, split.index, cfg, ulira_config, progress=progress) if ulira_config else None
    lo, hi = su.mia.auc_ci
    return UnlearnEvaluation(
        method=method,
        kind=get_method(method).kind,
        n_train=len(train),
        n_forget=len(split.forget),
        forget_kind=forget_kind,
        unlearned=su,
        retrained=sr,
        original=so,
        privleak=privleak(su.mia_auc, sr.mia_auc),
        privleak_ci=(privleak(lo, sr.mia_auc), privleak(hi, sr.mia_auc)),
        privleak_original=privleak(so.mia_auc, sr.mia_auc),
        seconds_unlearn=res.seconds,
        seconds_retrain=t_re,
        fraction_retrained=res.fraction_retrained,
        gradient_steps=res.gradient_steps,
        examples_processed=res.examples_processed,
        ulira=ul,
        details={k: v for k, v in res.details.items() if k != "residual_bound_per_head"},
    )


@dataclass(frozen=True)
class SequenceStep:
    """State after request ``request`` (1-based): cumulative rows removed, utility and leakage vs retrain."""

    request: int
    n_removed: int
    test_accuracy: float
    test_accuracy_retrain: float
    forget_accuracy: float
    forget_accuracy_retrain: float
    privleak: float
    seconds: float
    fraction_retrained: float = 0.0  # of this request (e.g. certified removal falling back to retraining)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _check_request(chunk: np.ndarray, current: np.ndarray, n: int, request: int) -> None:
    """Refuse a request that repeats a row, leaves ``0..n-1``, or names a row an earlier request removed."""
    bad = chunk[(chunk < 0) | (chunk >= n)]
    if len(bad):
        raise InvalidParameterError(
            f"The 'forget_index' parameter of sequence must index rows of train (0..{n - 1}). "
            f"Got {int(bad[0])} in request {request} instead."
        )
    vals, counts = np.unique(chunk, return_counts=True)
    if (counts > 1).any():
        raise InvalidParameterError(
            f"The 'forget_index' parameter of sequence must not repeat a row. Got row {int(vals[counts > 1][0])} "
            f"twice in request {request} instead."
        )
    gone = chunk[~np.isin(chunk, current)]
    if len(gone):
        raise InvalidParameterError(
            f"The 'forget_index' parameter of sequence must not repeat a row across requests. Got row {int(gone[0])} "
            f"in request {request}, already removed by an earlier request, instead."
        )


def sequence(
    method: str,
    factory: Factory,
    train: ArrayDataset,
    forget_index: np.ndarray,
    test: ArrayDataset,
    config: UnlearnConfig,
    *,
    requests: int = 10,
    progress: bool = False,
) -> list[SequenceStep]:
    """Remove ``forget_index`` in ``requests`` successive requests (equal chunks), each applied to the
    previous result; after each, compare with a model retrained without everything removed so far.

    Raises InvalidParameterError naming 'forget_index' when a request holds a row out of range,
    twice, or already removed by an earlier request (each request is then cut with :func:`forget_split`).
    """
    check_int(requests, "requests", "sequence", low=1)
    idx = np.asarray(forget_index, dtype=np.int64)
    if len(idx) < requests:
        raise InvalidParameterError(
            f"The 'forget_index' parameter of sequence must hold at least one row per request ({requests}). "
            f"Got {len(idx)} instead."
        )
    cfg = replace(config, method=method)
    model, _ = _timed_train(method, factory, train, cfg)
    chunks = np.array_split(idx, requests)
    steps = []
    current = np.arange(len(train))  # rows of train still in the model
    for r, chunk in enumerate(tqdm(chunks, disable=not progress, desc=f"requests {method}"), start=1):
        _check_request(chunk, current, len(train), r)
        data = train.subset(torch.from_numpy(current))
        pos = np.searchsorted(current, chunk)
        split = forget_split(data, pos)
        res = unlearn(model, split.forget, split.retain, cfg)
        model = res.model
        current = np.setdiff1d(current, chunk)
        removed = train.subset(torch.from_numpy(np.sort(idx[: sum(len(c) for c in chunks[:r])])))
        retain = train.subset(torch.from_numpy(current))
        gold, _ = _timed_train(method, factory, retain, cfg)
        su = score_model(model, removed, retain, test, n_bootstrap=0)
        sr = score_model(gold, removed, retain, test, n_bootstrap=0)
        steps.append(
            SequenceStep(
                r,
                len(removed),
                su.test_accuracy,
                sr.test_accuracy,
                su.forget_accuracy,
                sr.forget_accuracy,
                privleak(su.mia_auc, sr.mia_auc),
                res.seconds,
                res.fraction_retrained,
            )
        )
    return steps


def scaling(
    method: str,
    factory: Factory,
    train: ArrayDataset,
    test: ArrayDataset,
    config: UnlearnConfig,
    fractions: Sequence[float] = (0.01, 0.05, 0.1),
    *,
    kind: str = "random",
    seed: int = 0,
    ulira_config: ULiRAConfig | None = None,
    progress: bool = False,
) -> list[UnlearnEvaluation]:
    """:func:`evaluate` at each forget-set fraction (the original is trained once, except for methods
    whose removal consumes it, e.g. SISA's checkpoints)."""
    cfg = replace(config, method=method)
    shared = get_method(method).train is train_plain
    original = _timed_train(method, factory, train, cfg)[0] if shared else None
    return [
        evaluate(
            method,
            factory,
            train,
            choose_forget(train, f, kind, seed),
            test,
            cfg,
            original=original,
            ulira_config=ulira_config,
            forget_kind=kind,
            progress=progress,
        )
        for f in fractions
    ]
