"""The unlearning section of the privacy report: the methods table (six criteria, with intervals),
U-LiRA ROC, drift over the removal requests and scaling with the forget-set size."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt

from privlab.report.figures import roc_figure
from privlab.report.sections import CardRow, Figure, Section, Table, svg_of

CHANCE_TPR = 0.01


def _ulira(main: dict[str, Any]) -> dict[str, Any] | None:
    u: dict[str, Any] | None = main["leakage"].get("ulira")
    return u


def _tpr(u: dict[str, Any] | None) -> tuple[Any, Any]:
    if u is None:
        return "–", "–"
    return u["tpr_at_fpr"]["0.01"], u["tpr_at_fpr_ci"]["0.01"]


def methods_table(results: dict[str, Any]) -> Table:
    cols = [
        "method",
        "kind",
        "forget acc.",
        "forget acc. (retrain)",
        "PrivLeak",
        "PrivLeak CI",
        "U-LiRA TPR@1%FPR",
        "U-LiRA CI",
        "U-LiRA AUC",
        "retain acc.",
        "test acc.",
        "test acc. (retrain)",
        "time / retrain",
        "fraction retrained",
        "drift: test acc. (1st -> last request)",
        "drift: PrivLeak (1st -> last)",
    ]
    rows = []
    if "original" in results:
        o = results["original"]
        rows.append(
            [
                "original (no unlearning)",
                "–",
                "–",
                "–",
                "–",
                "–",
                o["tpr_at_fpr"]["0.01"],
                o["tpr_at_fpr_ci"]["0.01"],
                o["auc"],
                "–",
                "–",
                "–",
                "–",
                "–",
                "–",
                "–",
            ]
        )
    for m, r in results.items():
        if m == "original":
            continue
        main = r["main"]
        u = _ulira(main)
        tpr, ci = _tpr(u)
        seq = r.get("sequence") or []
        drift_acc = f"{seq[0]['test_accuracy']:.3f} -> {seq[-1]['test_accuracy']:.3f}" if seq else "–"
        drift_pl = f"{seq[0]['privleak']:+.3f} -> {seq[-1]['privleak']:+.3f}" if seq else "–"
        rows.append(
            [
                m,
                main["kind"],
                main["memorisation"]["forget_accuracy"],
                main["memorisation"]["forget_accuracy_retrain"],
                main["leakage"]["privleak"],
                main["leakage"]["privleak_ci"],
                tpr,
                ci,
                u["auc"] if u else "–",
                main["utility"]["retain_accuracy"],
                main["utility"]["test_accuracy"],
                main["utility"]["test_accuracy_retrain"],
                main["cost"]["time_ratio"],
                main["cost"]["fraction_retrained"],
                drift_acc,
                drift_pl,
            ]
        )
    return Table(
        "Unlearning methods against retraining",
        cols,
        rows,
        note="PrivLeak = (AUC_unlearn - AUC_retrain) / AUC_retrain of the LOSS attack, forget vs held-out rows "
        "(MUSE); U-LiRA (Hayes et al. 2024): per-example likelihood ratio of unlearned vs retrained shadow models, "
        "TPR at 1% FPR with 95% bootstrap intervals (chance = 0.01).",
    )


def scaling_table(results: dict[str, Any]) -> Table:
    rows = []
    for m, r in results.items():
        for e in r.get("scaling", []) if m != "original" else []:
            rows.append(
                [
                    m,
                    e["fraction"],
                    e["n_forget"],
                    e["memorisation"]["forget_accuracy_gap"],
                    e["leakage"]["privleak"],
                    e["utility"]["test_accuracy"],
                    e["cost"]["time_ratio"],
                    e["cost"]["fraction_retrained"],
                ]
            )
    cols = [
        "method",
        "forget fraction",
        "rows",
        "forget acc. gap",
        "PrivLeak",
        "test acc.",
        "time / retrain",
        "fraction retrained",
    ]
    return Table("Scaling with the forget-set size", cols, rows)


def _line_figure(results: dict[str, Any], key: str, x: str, y: str, xlabel: str, ylabel: str, title: str) -> str:
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for m, r in results.items():
        pts = r.get(key) if m != "original" else None
        if not pts:
            continue
        xs = [p[x] for p in pts]
        ys = [p[y] if y in p else p["leakage"]["privleak"] for p in pts]
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=m)
    ax.axhline(0.0, color="grey", lw=0.8, ls="--") if ylabel.startswith("PrivLeak") else None
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return svg_of(fig)


def unlearning_section(ucfg: Any, results: dict[str, Any]) -> Section:
    """The report section from the per-method results of :func:`privlab.unlearn.run.evaluate_method`."""
    sec = Section(
        kind="unlearning",
        title="Machine unlearning",
        summary=f"{len([m for m in results if m != 'original'])} methods, forget set "
        f"{ucfg.forget_fraction:.0%} ({ucfg.forget_kind}), each against the model retrained without it.",
    )
    sec.tables.append(methods_table(results))
    if any(r.get("scaling") for m, r in results.items() if m != "original"):
        sec.tables.append(scaling_table(results))
    curves = {}
    if "original" in results:
        o = results["original"]
        curves["original"] = (o["roc"]["fpr"], o["roc"]["tpr"], o["auc"])
    for m, r in results.items():
        u = _ulira(r["main"]) if m != "original" else None
        if u:
            curves[m] = (u["roc"]["fpr"], u["roc"]["tpr"], u["auc"])
    if curves:
        sec.figures.append(Figure("U-LiRA ROC", roc_figure(curves, "U-LiRA: unlearned vs retrained (per example)")))
    if any(r.get("sequence") for m, r in results.items() if m != "original"):
        sec.figures.append(
            Figure(
                "Drift over removal requests",
                _line_figure(
                    results,
                    "sequence",
                    "request",
                    "test_accuracy",
                    "request",
                    "test accuracy",
                    "test accuracy after each removal request",
                ),
            )
        )
        sec.figures.append(
            Figure(
                "Leakage over removal requests",
                _line_figure(
                    results,
                    "sequence",
                    "request",
                    "privleak",
                    "request",
                    "PrivLeak",
                    "PrivLeak (cumulative forget set) after each request",
                ),
            )
        )
    if any(r.get("scaling") for m, r in results.items() if m != "original"):
        sec.figures.append(
            Figure(
                "Scaling with forget-set size",
                _line_figure(
                    results,
                    "scaling",
                    "fraction",
                    "privleak",
                    "forget fraction",
                    "PrivLeak",
                    "PrivLeak vs forget-set size",
                ),
            )
        )
    for m, r in results.items():
        if m == "original":
            continue
        main = r["main"]
        u = _ulira(main)
        claim = {"exact": "exact removal", "approximate": "none (approximate)", "certified": "certified"}[main["kind"]]
        if main["kind"] == "certified" and "guarantee" in main["details"]:
            claim = main["details"]["guarantee"] + (" (retrained)" if main["details"].get("retrained") else "")
        ok = None if u is None else bool(u["tpr_at_fpr_ci"]["0.01"][0] <= CHANCE_TPR)
        sec.card.append(
            CardRow(
                model=f"unlearn: {m}",
                claimed=claim,
                measured="–"
                if u is None
                else f"U-LiRA TPR@1%FPR {u['tpr_at_fpr']['0.01']:.3f}; PrivLeak {main['leakage']['privleak']:+.3f}",
                utility=f"test acc. {main['utility']['test_accuracy']:.3f} "
                f"(retrain {main['utility']['test_accuracy_retrain']:.3f})",
                verdict="–" if u is None else ("consistent with retraining" if ok else "forget set still detectable"),
                ok=ok,
            )
        )
    sec.notes.append(
        "A method 'looks fine' by the aggregate metrics when its forget accuracy and PrivLeak match retraining; "
        "U-LiRA tests each forget example against shadow models that were themselves trained and unlearned the "
        "same way (Hayes et al. 2024), and can still detect it."
    )
    sec.data = {"config": ucfg.to_dict(), "results": results}
    return sec
