"""Log-log ROC curves of all attacks on one figure (Carlini et al. 2022, Fig. 1 style)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from privlab.attacks.results import MIAResult


def plot_roc(result: MIAResult, path: str | os.PathLike[str], title: str = "Membership inference") -> list[Path]:
    """Write the ROC of every attack on log-log axes to ``path`` (PNG) and the same stem as SVG; return both paths."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    p = Path(path)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    floor = 1e-5
    for name, m in result.metrics.items():
        fpr, tpr = np.maximum(np.array(m.roc_fpr), floor), np.maximum(np.array(m.roc_tpr), floor)
        ax.plot(fpr, tpr, label=f"{name} (AUC {m.auc:.3f}, TPR@0.1% {m.tpr_at_fpr.get(0.001, float('nan')):.3f})")
    ax.plot([floor, 1], [floor, 1], "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out = [p.with_suffix(".png"), p.with_suffix(".svg")]
    for o in out:
        fig.savefig(o, dpi=150)
    plt.close(fig)
    return out
