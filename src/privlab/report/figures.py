"""Report figures as inline SVG strings (matplotlib, Agg backend): log-log ROC, epsilon claimed vs
audited, utility. SVG keeps the HTML report a single self-contained file."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def svg_of(fig: Any) -> str:
    """A matplotlib figure as an inline SVG string (the figure is closed)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def roc_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]], title: str) -> str:
    """Log-log ROC of each attack: ``curves[name] = (fpr, tpr, auc)``."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    floor = 1e-5
    for name, (fpr, tpr, auc) in curves.items():
        f = np.clip(np.asarray(fpr, dtype=float), floor, 1)
        t = np.clip(np.asarray(tpr, dtype=float), floor, 1)
        ax.plot(f, t, label=f"{name} (AUC {auc:.3f})", lw=1.4)
    ax.plot([floor, 1], [floor, 1], ls="--", color="grey", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    return svg_of(fig)


def epsilon_figure(rows: Sequence[tuple[str, float, float, float | None]]) -> str:
    """Bars of audited lower bounds beside the claimed epsilon: rows of (label, claimed, lower bound, confidence)."""
    fig, ax = plt.subplots(figsize=(5.2, 0.55 * len(rows) + 1.4))
    y = np.arange(len(rows))
    claimed = [r[1] for r in rows]
    lbs = [r[2] for r in rows]
    ax.barh(
        y,
        lbs,
        color=["#c0392b" if lb > c else "#2e86c1" for lb, c in zip(lbs, claimed, strict=True)],
        height=0.5,
        label="audited lower bound",
    )
    for yi, c in zip(y, claimed, strict=True):
        ax.plot([c, c], [yi - 0.35, yi + 0.35], color="black", lw=2)
    ax.plot([], [], color="black", lw=2, label="claimed epsilon")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("epsilon")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("claimed vs audited epsilon (red: claim violated)", fontsize=10)
    return svg_of(fig)


def utility_figure(values: Mapping[str, float], metric: str) -> str:
    """A bar per model of ``metric`` (e.g. test accuracy)."""
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    names = list(values)
    ax.bar(names, [values[n] for n in names], color="#27ae60", width=0.5)
    for i, n in enumerate(names):
        ax.text(i, values[n], f"{values[n]:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(metric)
    ax.set_title(f"utility: {metric}", fontsize=10)
    return svg_of(fig)
