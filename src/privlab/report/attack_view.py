"""What the report shows of a membership-inference result: curves, intervals, the resolvable FPR, the strongest attack.

An evaluation with ``N`` non-members cannot tell a false-positive rate below ``1 / N`` from zero:
the smallest non-zero empirical FPR is ``1 / N``, so "TPR at 0.01% FPR" measured on 3,000
non-members is TPR at FPR 0. The report therefore shows TPR only at the reported FPRs
``f >= 1 / N``, starts the ROC's FPR axis at ``1 / N``, and picks the *strongest* attack by TPR at
the lowest resolvable reported FPR (Carlini et al. 2022, "Membership Inference Attacks From First
Principles", Sec. III: an attack matters if it identifies some members with high confidence,
which AUC, an average over all thresholds, does not measure). Ties go to the TPR at the next
higher FPR, then to AUC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_EPS = 1e-12


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _pair(x: Any) -> tuple[float, float] | None:
    if isinstance(x, list | tuple) and len(x) == 2 and all(_num(v) is not None for v in x):
        return float(x[0]), float(x[1])
    return None


def attack_curves(mia: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Normalise an attack result JSON (``privlab.attacks.MIAResult.to_dict``) to ``{attack: curve}``.

    A curve has ``auc``, ``auc_ci``, ``balanced_accuracy``, ``balanced_accuracy_ci``, ``fpr``,
    ``tpr`` (the ROC), ``tpr_at`` ``{fpr string: value}``, ``tpr_at_ci`` ``{fpr string: (low, high)}``,
    ``n_members``, ``n_nonmembers``, ``confidence`` and ``n_bootstrap`` (None where the result lacks them).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, entry in (mia.get("attacks") or {}).items():
        m = entry.get("metrics", {})
        roc = m.get("roc") or {}
        tpr_at: dict[str, Any] = {}
        for k, v in (m.get("tpr_at_fpr") or {}).items():
            tpr_at[str(k)] = v.get("value", v.get("estimate")) if isinstance(v, dict) else v
        out[name] = {
            "auc": m.get("auc"),
            "auc_ci": _pair(m.get("auc_ci")),
            "fpr": roc.get("fpr", []),
            "tpr": roc.get("tpr", []),
            "tpr_at": tpr_at,
            "tpr_at_ci": {str(k): _pair(v) for k, v in (m.get("tpr_at_fpr_ci") or {}).items()},
            "balanced_accuracy": m.get("balanced_accuracy"),
            "balanced_accuracy_ci": _pair(m.get("balanced_accuracy_ci")),
            "n_members": m.get("n_members"),
            "n_nonmembers": m.get("n_nonmembers"),
            "confidence": m.get("confidence"),
            "n_bootstrap": m.get("n_bootstrap"),
        }
    return out


def reported_fprs(curves: dict[str, dict[str, Any]]) -> list[float]:
    """The FPRs at which every attack reports a TPR, high to low."""
    sets = [{float(k) for k in c["tpr_at"]} for c in curves.values()]
    common = set.intersection(*sets) if sets else set()
    return sorted(common, reverse=True)


def fpr_resolution(curves: dict[str, dict[str, Any]]) -> float | None:
    """``1 / N`` for the largest non-member count ``N`` among the attacks (None if unknown)."""
    ns = [int(n) for c in curves.values() if (n := _num(c.get("n_nonmembers"))) is not None and n > 0]
    return 1.0 / max(ns) if ns else None


def resolvable_fprs(curves: dict[str, dict[str, Any]]) -> list[float]:
    """Reported FPRs ``>= 1 / N`` (all reported ones when ``N`` is unknown), high to low."""
    res = fpr_resolution(curves)
    return [f for f in reported_fprs(curves) if res is None or f >= res * (1 - 1e-9)]


def tpr_at(curve: dict[str, Any], fpr: float) -> tuple[float | None, tuple[float, float] | None]:
    """(TPR, its interval) of ``curve`` at the reported ``fpr``; None where not reported."""
    value = interval = None
    for k, v in curve["tpr_at"].items():
        try:
            if abs(float(k) - fpr) < _EPS:
                value = _num(v)
                interval = curve["tpr_at_ci"].get(k)
        except ValueError:
            continue
    return value, interval


@dataclass(frozen=True)
class Strongest:
    """The strongest attack on one model and the FPR it was chosen at."""

    name: str
    fpr: float
    tpr: float
    tpr_ci: tuple[float, float] | None


def strongest_attack(curves: dict[str, dict[str, Any]]) -> Strongest | None:
    """The attack with the highest TPR at the lowest resolvable reported FPR (ties: next FPR up, then AUC)."""
    reported = reported_fprs(curves)
    if not curves or not reported:
        return None
    fprs = resolvable_fprs(curves) or reported[:1]  # none resolvable: the highest reported FPR
    order = sorted(fprs)  # lowest first: the FPR that decides, then the tie-breakers

    def key(name: str) -> tuple[float, ...]:
        c = curves[name]
        return (*((tpr_at(c, f)[0] or 0.0) for f in order), _num(c["auc"]) or 0.0)

    best = max(curves, key=key)
    value, interval = tpr_at(curves[best], order[0])
    return Strongest(best, order[0], value or 0.0, interval)
