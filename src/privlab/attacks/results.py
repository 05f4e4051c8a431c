"""Run several attacks on one target and keep everything: metrics, per-example scores, the setup.

:class:`MIAResult` is versioned JSON (``schema``, ``version``); loading refuses any other schema or
a newer version with :class:`~privlab.errors.CorruptArtifactError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from privlab.attacks.base import Attack, get_attack
from privlab.attacks.metrics import FPRS, AttackMetrics, evaluate_scores
from privlab.attacks.signals import PopulationSignals, Signals
from privlab.errors import CorruptArtifactError, InvalidParameterError

SCHEMA = "privlab.attacks.mia_result"
VERSION = 1
DEFAULT_ATTACKS = ("loss", "attack_r", "lira_online", "lira_offline", "rmia_offline", "rmia_online")


@dataclass(frozen=True, eq=False)
class MIAResult:
    """Metrics and per-example scores (N,) of each attack, the true membership (N,), and the setup."""

    metrics: dict[str, AttackMetrics]
    scores: dict[str, np.ndarray]
    membership: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "config": self.config,
            "membership": self.membership.astype(int).tolist(),
            "attacks": {
                n: {"metrics": m.to_dict(), "scores": self.scores[n].tolist()} for n, m in self.metrics.items()
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MIAResult:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA or not isinstance(d.get("version"), int):
            raise CorruptArtifactError(
                f"Not a {SCHEMA} document (schema={d.get('schema') if isinstance(d, dict) else None!r})."
            )
        if d["version"] > VERSION:
            raise CorruptArtifactError(f"{SCHEMA} version {d['version']} is newer than this privlab reads ({VERSION}).")
        try:
            attacks = d["attacks"]
            return cls(
                metrics={n: AttackMetrics.from_dict(a["metrics"]) for n, a in attacks.items()},
                scores={n: np.asarray(a["scores"], dtype=np.float64) for n, a in attacks.items()},
                membership=np.asarray(d["membership"], dtype=bool),
                config=dict(d.get("config", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CorruptArtifactError(f"Malformed {SCHEMA} document: {exc!r}") from exc

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write versioned JSON (atomically)."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), allow_nan=False))
        os.replace(tmp, p)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> MIAResult:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CorruptArtifactError(f"Cannot read MIA result {path}: {exc}") from exc
        return cls.from_dict(data)

    def table(self) -> str:
        """A plain-text table: AUC, balanced accuracy and TPR at each FPR (with intervals).

        With N non-members an FPR below 1 / N cannot be told from 0 (the smallest non-zero empirical
        FPR is 1 / N), so TPR there is shown as "unresolved" (as in the report,
        :mod:`privlab.report.attack_view`); the last column is N.
        """
        fprs = sorted(next(iter(self.metrics.values())).tpr_at_fpr, reverse=True) if self.metrics else list(FPRS)
        head = (f"{'attack':<24}{'AUC':>22}{'bal.acc':>9}" + "".join(f"{'TPR@' + f'{f:g}':>24}" for f in fprs)
                + f"{'non-members':>13}")
        lines = [head]
        for n, m in self.metrics.items():
            row = f"{n:<24}{m.auc:>7.4f} [{m.auc_ci[0]:.3f},{m.auc_ci[1]:.3f}]{m.balanced_accuracy:>9.4f}"
            for f in fprs:
                if m.n_nonmembers and f * m.n_nonmembers < 1 - 1e-9:
                    row += f"{'unresolved':>24}"
                    continue
                lo, hi = m.tpr_at_fpr_ci[f]
                row += f"{m.tpr_at_fpr[f]:>8.4f} [{lo:.4f},{hi:.4f}]"
            lines.append(row + f"{m.n_nonmembers:>13}")
        return "\n".join(lines)


def run_attacks(
    target_signals: Signals,
    target_membership: np.ndarray,
    reference_signals: Signals | None = None,
    reference_mask: np.ndarray | None = None,
    attacks: Sequence[str | Attack] = DEFAULT_ATTACKS,
    population_signals: PopulationSignals | None = None,
    seed: int = 0,
    *,
    n_bootstrap: int = 200,
    attack_kwargs: dict[str, dict[str, Any]] | None = None,
) -> MIAResult:
    """Fit every attack on the references, score the target (K = 1), evaluate against its membership (N,).

    ``attacks`` holds registered names (see :data:`privlab.attacks.ATTACKS`) or attack objects;
    ``attack_kwargs[name]`` are passed to the registered factory.
    """
    membership = np.asarray(target_membership)
    if membership.shape != (target_signals.n_examples,) or membership.dtype != bool:
        raise InvalidParameterError(
            f"The 'target_membership' parameter of run_attacks must be a bool array of shape "
            f"({target_signals.n_examples},). Got {membership.dtype} {membership.shape} instead."
        )
    kwargs = attack_kwargs or {}
    metrics, scores, details = {}, {}, {}
    for spec in attacks:
        attack = get_attack(spec, **kwargs.get(spec, {})) if isinstance(spec, str) else spec
        name = spec if isinstance(spec, str) else attack.name
        if attack.needs_reference and reference_signals is None:
            raise InvalidParameterError(
                f"The 'reference_signals' parameter of run_attacks is required by attack {name!r}. Got None instead."
            )
        pop_ref = population_signals.reference if population_signals is not None else None
        pop_tgt = population_signals.target if population_signals is not None else None
        attack.fit(reference_signals, reference_mask, pop_ref)
        s = attack.score(target_signals, pop_tgt)
        scores[name] = s
        metrics[name] = evaluate_scores(s, membership, n_bootstrap=n_bootstrap, seed=seed)
        details[name] = {
            k: v for k, v in vars(attack).items() if not k.startswith("_") and isinstance(v, int | float | str | bool)
        }
    config = {
        "attacks": details,
        "n_reference_models": 0 if reference_signals is None else reference_signals.n_models,
        "n_examples": len(membership),
        "n_population": 0 if population_signals is None else population_signals.target.n_examples,
        "n_views": target_signals.n_views,
        "seed": seed,
        "n_bootstrap": n_bootstrap,
    }
    return MIAResult(metrics=metrics, scores=scores, membership=membership, config=config)
