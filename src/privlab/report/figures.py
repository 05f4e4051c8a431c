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


def roc_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]],
    title: str,
    fpr_floor: float = 1e-5,
    tpr_floor: float | None = None,
) -> str:
    """Log-log ROC of each attack: ``curves[name] = (fpr, tpr, auc)``.

    The FPR axis starts at ``fpr_floor`` (the report passes ``1 / N`` for ``N`` non-members: lower
    FPRs cannot be resolved, so points below it are dropped rather than drawn); the TPR axis at
    ``tpr_floor`` (default ``fpr_floor``).
    """
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    x0 = float(fpr_floor)
    y0 = float(tpr_floor if tpr_floor is not None else fpr_floor)
    for name, (fpr, tpr, auc) in curves.items():
        f = np.asarray(fpr, dtype=float)
        t = np.asarray(tpr, dtype=float)
        keep = f >= x0 * (1 - 1e-9)
        ax.plot(f[keep], np.clip(t[keep], y0, 1), label=f"{name} (AUC {auc:.3f})", lw=1.4)
    ax.plot([x0, 1], [x0, 1], ls="--", color="grey", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x0, 1)
    ax.set_ylim(min(x0, y0), 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    return svg_of(fig)


def epsilon_figure(rows: Sequence[tuple[str, float, float, float | None]]) -> str:
    """Audited epsilon beside the claimed one: rows of (label, claimed, lower bound, confidence).

    A lower bound proven at confidence ``c`` is the one-sided interval ``[bound, inf)``: drawn as
    a dot with a band to the right edge, labelled ``>= bound (c)``. A point estimate (``None``
    confidence) proves nothing and is drawn as a hollow marker. The claim is the black tick; red
    marks a proven bound above it.
    """
    fig, ax = plt.subplots(figsize=(5.6, 0.6 * len(rows) + 1.5))
    y = np.arange(len(rows))
    claimed = [r[1] for r in rows]
    lbs = [r[2] for r in rows]
    right = 1.25 * max([*claimed, *lbs, 1e-3])
    for yi, (_, c, lb, conf) in zip(y, rows, strict=True):
        color = "#c0392b" if conf is not None and lb > c else "#2e86c1"
        if conf is None:
            ax.plot([lb], [yi], "o", mfc="white", mec=color, ms=7)
            label = f"{lb:.3g} (estimate, no guarantee)"
        else:
            ax.fill_betweenx([yi - 0.18, yi + 0.18], lb, right, color=color, alpha=0.18, lw=0)
            ax.plot([lb], [yi], "o", color=color, ms=7)
            ax.annotate("", xy=(right, yi), xytext=(lb, yi), arrowprops={"arrowstyle": "->", "color": color})
            label = f"ε ≥ {lb:.3g} ({100 * conf:.3g}% conf.)"
        ax.text(lb, yi + 0.24, label, fontsize=7, color=color)
        ax.plot([c, c], [yi - 0.35, yi + 0.35], color="black", lw=2)
    ax.plot([], [], "o", color="#2e86c1", label="audited lower bound: [bound, ∞) at its confidence")
    ax.plot([], [], color="black", lw=2, label="claimed epsilon")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4 + 0.3)
    ax.set_xlim(0, right)
    ax.set_xlabel("epsilon")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=1, frameon=False)
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
