"""ROC, AUC, balanced accuracy and TPR at low FPR, with bootstrap confidence intervals.

TPR at FPR ``f`` is the largest TPR over thresholds whose FPR is at most ``f`` (Carlini et al.
2022, Sec. III: "we report the true-positive rate at a fixed low false-positive rate"). Balanced
accuracy is the best ``(TPR + 1 - FPR) / 2`` over thresholds. Intervals are percentile bootstrap
intervals over examples (members and non-members resampled together, ``n_bootstrap`` times).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from privlab._validation import check_int, check_real
from privlab.errors import InvalidParameterError

FPRS = (0.1, 0.01, 0.001, 0.0001)
ROC_GRID = np.unique(np.concatenate([np.logspace(-5, 0, 251), [0.0]]))


def roc_curve(scores: np.ndarray, membership: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1); higher score = member."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], membership[order].astype(bool)
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps, fps = np.cumsum(y)[distinct], np.cumsum(~y)[distinct]
    P, N = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fps / N], np.r_[0.0, tps / P]


def auc(scores: np.ndarray, membership: np.ndarray) -> float:
    """Area under the ROC curve = Pr[score(member) > score(non-member)] + Pr[tie] / 2 (Mann-Whitney)."""
    y = membership.astype(bool)
    P, N = int(y.sum()), int((~y).sum())
    r = rankdata(scores)
    return float((r[y].sum() - P * (P + 1) / 2) / (P * N))


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR with FPR <= ``target``."""
    return float(tpr[fpr <= target + 1e-12].max())


def _point(scores: np.ndarray, membership: np.ndarray, fprs: tuple[float, ...]) -> np.ndarray:
    fpr, tpr = roc_curve(scores, membership)
    return np.array([auc(scores, membership), float(np.max((tpr + 1 - fpr) / 2)), *(tpr_at(fpr, tpr, f) for f in fprs)])


@dataclass(frozen=True)
class AttackMetrics:
    """Metrics of one attack on one target; ``*_ci`` are (low, high) bootstrap intervals."""

    auc: float
    auc_ci: tuple[float, float]
    balanced_accuracy: float
    balanced_accuracy_ci: tuple[float, float]
    tpr_at_fpr: dict[float, float]
    tpr_at_fpr_ci: dict[float, tuple[float, float]]
    roc_fpr: tuple[float, ...] = field(repr=False)
    roc_tpr: tuple[float, ...] = field(repr=False)
    n_members: int = 0
    n_nonmembers: int = 0
    confidence: float = 0.95
    n_bootstrap: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "auc": self.auc,
            "auc_ci": list(self.auc_ci),
            "balanced_accuracy": self.balanced_accuracy,
            "balanced_accuracy_ci": list(self.balanced_accuracy_ci),
            "tpr_at_fpr": {str(k): v for k, v in self.tpr_at_fpr.items()},
            "tpr_at_fpr_ci": {str(k): list(v) for k, v in self.tpr_at_fpr_ci.items()},
            "roc": {"fpr": list(self.roc_fpr), "tpr": list(self.roc_tpr)},
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "confidence": self.confidence,
            "n_bootstrap": self.n_bootstrap,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttackMetrics:
        return cls(
            auc=float(d["auc"]),
            auc_ci=(d["auc_ci"][0], d["auc_ci"][1]),
            balanced_accuracy=float(d["balanced_accuracy"]),
            balanced_accuracy_ci=(d["balanced_accuracy_ci"][0], d["balanced_accuracy_ci"][1]),
            tpr_at_fpr={float(k): float(v) for k, v in d["tpr_at_fpr"].items()},
            tpr_at_fpr_ci={float(k): (v[0], v[1]) for k, v in d["tpr_at_fpr_ci"].items()},
            roc_fpr=tuple(d["roc"]["fpr"]),
            roc_tpr=tuple(d["roc"]["tpr"]),
            n_members=int(d["n_members"]),
            n_nonmembers=int(d["n_nonmembers"]),
            confidence=float(d["confidence"]),
            n_bootstrap=int(d["n_bootstrap"]),
        )


def evaluate_scores(
    scores: np.ndarray,
    membership: np.ndarray,
    *,
    fprs: tuple[float, ...] = FPRS,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> AttackMetrics:
    """Metrics of ``scores`` (N,) against true ``membership`` (N,) bool, with bootstrap intervals."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(membership)
    if s.ndim != 1 or y.shape != s.shape or y.dtype != bool or y.all() or not y.any():
        raise InvalidParameterError(
            "The 'membership' parameter of evaluate_scores must be a bool array shaped like scores "
            f"{s.shape} with both members and non-members. Got {y.dtype} {y.shape} instead."
        )
    if not np.isfinite(s).all():
        raise InvalidParameterError("The 'scores' parameter of evaluate_scores must be finite. Got NaN/inf instead.")
    check_int(n_bootstrap, "n_bootstrap", "evaluate_scores", low=0)
    check_real(confidence, "confidence", "evaluate_scores", low=0.0, high=1.0, low_open=True, high_open=True)
    point = _point(s, y, fprs)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(s), len(s))
        if y[idx].all() or not y[idx].any():
            continue
        boots.append(_point(s[idx], y[idx], fprs))
    q = ((1 - confidence) / 2, (1 + confidence) / 2)
    lo, hi = np.quantile(np.array(boots), q, axis=0) if boots else (point, point)
    fpr, tpr = roc_curve(s, y)
    grid_tpr = [tpr_at(fpr, tpr, g) for g in ROC_GRID]
    return AttackMetrics(
        auc=float(point[0]),
        auc_ci=(float(lo[0]), float(hi[0])),
        balanced_accuracy=float(point[1]),
        balanced_accuracy_ci=(float(lo[1]), float(hi[1])),
        tpr_at_fpr={f: float(point[2 + i]) for i, f in enumerate(fprs)},
        tpr_at_fpr_ci={f: (float(lo[2 + i]), float(hi[2 + i])) for i, f in enumerate(fprs)},
        roc_fpr=tuple(float(g) for g in ROC_GRID),
        roc_tpr=tuple(grid_tpr),
        n_members=int(y.sum()),
        n_nonmembers=int((~y).sum()),
        confidence=confidence,
        n_bootstrap=len(boots),
    )
