"""The synthetic-data section of the privacy report: tables, the privacy-utility frontier, card rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt

from privlab.report.sections import CardRow, Figure, Section, Table, svg_of

INF_X = 64.0  # where epsilon = inf is drawn on the log axis


def _eps(v: Any) -> float:
    return float(v)  # JSON stores inf as the string "inf", which float() reads back


def _fmt_eps(e: float) -> str:
    return "inf" if math.isinf(e) else f"{e:g}"


def _attack_auc(r: dict[str, Any]) -> float:
    """The strongest membership attack's AUC on this release (shadow model if run, else DOMIAS outliers)."""
    aucs = [r["domias"]["outliers"]["auc"], r["domias"]["all"]["auc"]]
    if r.get("shadow_mia"):
        aucs.append(r["shadow_mia"]["auc"])
    return float(max(aucs))


def frontier_figure(results: Sequence[dict[str, Any]]) -> str:
    """Epsilon vs train-on-synthetic accuracy, and epsilon vs the strongest attack's advantage (AUC - 0.5)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    by_gen: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_gen.setdefault(r["generator"], []).append(r)
    real_acc = None
    for gen, rows in by_gen.items():
        rows = sorted(rows, key=lambda r: _eps(r["epsilon"]))
        xs = [INF_X if math.isinf(_eps(r["epsilon"])) else _eps(r["epsilon"]) for r in rows]
        ax1.plot(xs, [r["utility"]["synthetic"]["accuracy"] for r in rows], marker="o", label=gen)
        ax2.plot(xs, [_attack_auc(r) - 0.5 for r in rows], marker="o", label=gen)
        real_acc = rows[0]["utility"]["real"]["accuracy"]
    if real_acc is not None:
        ax1.axhline(real_acc, ls="--", color="grey", lw=0.8, label="train on real")
    ax2.axhline(0.0, ls="--", color="grey", lw=0.8, label="chance")
    for ax, ylab in ((ax1, "TSTR accuracy (income)"), (ax2, "attack advantage (AUC - 0.5)")):
        ax.set_xscale("log")
        ax.set_xlabel("epsilon (rightmost point: inf / non-private)")
        ax.set_ylabel(ylab)
        ax.grid(True, alpha=0.3)
    ax1.legend(fontsize=7)
    fig.suptitle("Privacy-utility frontier of synthetic Adult releases", fontsize=10)
    return svg_of(fig)


def synth_section(results: Sequence[dict[str, Any]], config: dict[str, Any] | None = None) -> Section:
    """A report :class:`Section` from :func:`privlab.synth.experiment.run_synthetic`'s results."""
    sec = Section(
        kind="synthetic",
        title="Synthetic data",
        summary="Each generator fitted on the same Adult training table at each epsilon; the release is scored for "
        "fidelity (k-way marginal TVD), utility (train on synthetic, test on real) and leakage (shadow-model "
        "membership inference on an outlier target, DOMIAS density ratio, linear-reconstruction attribute "
        "inference, distance to closest record).",
    )
    budget_rows, fid_rows, leak_rows = [], [], []
    for r in results:
        e = _eps(r["epsilon"])
        b = r["budget"]
        led = b.get("ledger") or {}
        budget_rows.append(
            [r["generator"], _fmt_eps(e), _eps(b["epsilon"]) if led else "non-private", led.get("rho", "-"),
             led.get("schema", "-")]
        )  # fmt: skip
        u, f = r["utility"], r["fidelity"]
        fid_rows.append(
            [r["generator"], _fmt_eps(e), f["tvd_1way"], f["tvd_2way"], f["tvd_3way"], u["synthetic"]["accuracy"],
             u["synthetic"]["auc"], u["real"]["accuracy"]]
        )  # fmt: skip
        sh = r.get("shadow_mia")
        ai = r["attribute_inference"]
        leak_rows.append(
            [r["generator"], _fmt_eps(e),
             "-" if not sh else sh["auc"], "-" if not sh else sh["auc_ci"],
             r["domias"]["all"]["auc"], r["domias"]["outliers"]["auc"], r["domias"]["outliers"]["auc_ci"],
             ai["accuracy_members"], ai["accuracy_control"], ai["accuracy_prior"], r["dcr"]["closer_to_train"]]
        )  # fmt: skip
        sec.card.append(
            CardRow(
                model=f"synthetic: {r['generator']} (eps {_fmt_eps(e)})",
                claimed="none" if not r["private"] else f"eps {_eps(b['epsilon']):.3g}",
                measured=f"MIA AUC {_attack_auc(r):.3f}",
                utility=f"TSTR acc {u['synthetic']['accuracy']:.3f}",
                verdict="leaks" if _attack_auc(r) > 0.6 else "no measured leak",
                ok=None if not r["private"] else _attack_auc(r) <= 0.6,
            )
        )
    sec.tables.append(
        Table("Privacy budget", ["generator", "target eps", "accounted eps", "rho (zCDP)", "ledger"], budget_rows,
              note="accounted epsilon: privlab.accounting (RDP for zCDP ledgers, PLD for DP-SGD) at the config's delta")
    )  # fmt: skip
    sec.tables.append(
        Table("Fidelity and utility", ["generator", "eps", "TVD 1-way", "TVD 2-way", "TVD 3-way", "TSTR acc",
              "TSTR AUC", "TRTR acc"], fid_rows)
    )  # fmt: skip
    sec.tables.append(
        Table("Leakage", ["generator", "eps", "shadow MIA AUC", "CI", "DOMIAS AUC", "DOMIAS AUC (outliers)", "CI",
              "AI acc (members)", "AI acc (control)", "AI acc (prior)", "DCR closer-to-train"], leak_rows,
              note="AI: attribute inference of the secret column by linear reconstruction (Annamalai et al. 2024)")
    )  # fmt: skip
    if results:
        sec.figures.append(
            Figure("Privacy-utility frontier", frontier_figure(results), "left: utility; right: strongest attack")
        )
    sec.notes.append(
        "Distance to closest record is reported for completeness only: it is not a privacy measure (it misses "
        "aggregate leakage and cannot tell copies of common records from copies of unique ones); see docs/synthetic.md."
    )
    sec.data = {"config": config or {}, "releases": list(results)}
    return sec
