"""The language-model section of the privacy report (a :class:`privlab.report.sections.Section`).

Built from one or more canary-experiment results (:func:`privlab.llm.experiment.run_canary_experiment`),
labelled e.g. "non-private" and "DP eps=8": exposure vs repetitions (table and figure), extraction
rates, the PII games, membership inference with the blind baseline (table and log-log ROC via
:func:`privlab.report.figures.roc_figure`), validation perplexity, and privacy-card rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt

from privlab.report.figures import roc_figure
from privlab.report.sections import CardRow, Figure, Section, Table, svg_of

FPR_COLUMN = "0.01"


def _exposure_figure(results: Mapping[str, dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    top = 0.0
    for label, r in results.items():
        curve = r["exposure"]["curve"]
        reps = sorted(int(k) for k in curve)
        mean = [curve[str(k) if str(k) in curve else k]["mean"] for k in reps]
        lo = [curve[str(k) if str(k) in curve else k]["min"] for k in reps]
        hi = [curve[str(k) if str(k) in curve else k]["max"] for k in reps]
        ax.plot(reps, mean, marker="o", label=label)
        ax.fill_between(reps, lo, hi, alpha=0.2)
        top = max(top, max(c["max_exposure"] for c in r["exposure"]["canaries"]))
        chance = r["exposure"]["chance"]
    ax.axhline(top, color="grey", ls=":", lw=1, label="maximum (log2 |R|)")
    ax.axhline(chance, color="grey", ls="--", lw=1, label="chance (1/ln 2)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("repetitions of the canary in the training text")
    ax.set_ylabel("exposure (bits)")
    ax.set_title("canary exposure vs repetitions", fontsize=10)
    ax.legend(fontsize=7)
    return svg_of(fig)


def _get(d: Mapping[Any, Any], k: int) -> Any:
    return d[str(k)] if str(k) in d else d[k]


def llm_section(results: Mapping[str, dict[str, Any]], title: str = "Language-model privacy") -> Section:
    """A report section comparing the labelled experiment results (e.g. non-private vs DP)."""
    labels = list(results)
    sec = Section(kind="llm", title=title)
    first = results[labels[0]]
    reps = sorted(int(k) for k in first["exposure"]["curve"])
    rows = []
    for k in reps:
        row: list[Any] = [k]
        for lab in labels:
            c = _get(results[lab]["exposure"]["curve"], k)
            row += [c["mean"], [c["min"], c["max"]]]
        rows.append(row)
    cols = ["repetitions"] + [x for lab in labels for x in (f"exposure ({lab})", f"range ({lab})")]
    max_exp = max(c["max_exposure"] for c in first["exposure"]["canaries"])
    sec.tables.append(
        Table(
            "Canary exposure (bits) vs repetitions",
            cols,
            rows,
            note=f"maximum log2|R| = {max_exp:.2f}; chance (an unrelated secret) is about "
            f"{first['exposure']['chance']:.2f}",
        )
    )
    sec.figures.append(Figure("Exposure vs repetitions", _exposure_figure(results), "Carlini et al. 2019 exposure"))
    calibrated = [lab for lab in labels if "exposure_reference" in results[lab]]
    if calibrated:
        cal_rows = [
            [k, *[_get(results[lab]["exposure_reference"]["curve"], k)["mean"] for lab in calibrated]] for k in reps
        ]
        kinds = sorted({results[lab].get("reference", {}).get("kind", "?") for lab in calibrated})
        sec.tables.append(
            Table(
                "Reference-calibrated exposure (bits) vs repetitions",
                ["repetitions"] + [f"exposure ({lab})" for lab in calibrated],
                cal_rows,
                note=f"candidates ranked by log p_target - log p_reference (reference: {', '.join(kinds)}; "
                "Carlini et al. 2021 Sec. 6.2): what the reference also finds likely does not count",
            )
        )
    ext_rows = []
    for k in reps:
        row = [k]
        for lab in labels:
            e = _get(results[lab]["extraction"]["rates"], k)
            row += [e["greedy"], e["beam"], e["sample"]]
        ext_rows.append(row)
    ext_cols = ["repetitions"] + [f"{m} ({lab})" for lab in labels for m in ("greedy", "beam", "sample")]
    sec.tables.append(Table("Fraction of canaries extracted (digits and PII)", ext_cols, ext_rows))
    if all("pii" in results[lab] for lab in labels):
        pii_rows = []
        for k in reps:
            row = [k]
            for lab in labels:
                p = results[lab]["pii"]
                row += [_get(p["reconstruction"], k), _get(p["inference"], k)]
            pii_rows.append(row)
        pii_cols = ["repetitions"] + [f"{g} ({lab})" for lab in labels for g in ("reconstruction", "inference")]
        sec.tables.append(
            Table("PII games (Lukas et al. 2023): accuracy", pii_cols, pii_rows, note="inference chance = 0.10")
        )
    mia_rows = []
    for lab in labels:
        r = results[lab]
        for name, a in r["mia"].items():
            m = a["metrics"]
            mia_rows.append(
                [lab, name, m["auc"], m["auc_ci"], m["tpr_at_fpr"][FPR_COLUMN], m["tpr_at_fpr_ci"][FPR_COLUMN]]
            )
        b = r["blind"]["metrics"]
        mia_rows.append(
            [
                lab,
                "blind baseline (text only)",
                b["auc"],
                b["auc_ci"],
                b["tpr_at_fpr"][FPR_COLUMN],
                b["tpr_at_fpr_ci"][FPR_COLUMN],
            ]
        )
        if r["blind"]["fires"]:
            sec.notes.append(f"{lab}: {r['blind']['message']}")
        curves = {
            n: (a["metrics"]["roc"]["fpr"], a["metrics"]["roc"]["tpr"], a["metrics"]["auc"])
            for n, a in r["mia"].items()
        }
        sec.figures.append(Figure(f"MIA ROC ({lab})", roc_figure(curves, f"LLM membership inference: {lab}")))
    sec.tables.append(
        Table("LLM membership inference", ["model", "attack", "AUC", "AUC CI", "TPR@1%FPR", "CI"], mia_rows)
    )
    util = [
        [
            lab,
            results[lab]["validation_perplexity"],
            results[lab]["training"]["epsilon"],
            results[lab]["training"].get("privacy_unit", "example") if results[lab]["training"]["private"] else None,
        ]
        for lab in labels
    ]
    sec.tables.append(
        Table(
            "Utility",
            ["model", "validation perplexity", "epsilon", "privacy unit"],
            util,
            note="epsilon protects one privacy unit: example = one training window; secret = every copy of a "
            "canary together; document = one source document (McMahan et al. 2018)",
        )
    )
    for lab in labels:
        t = results[lab]["training"]
        if t.get("converted"):
            sec.notes.append(
                f"{lab}: for DP, {len(t['converted'])} RMSNorm layers of the model's own class were trained as "
                "torch's RMSNorm (same formula, checked; see docs/llm.md)."
            )
        if t["frozen"] or t["untied"]:
            sec.notes.append(
                f"{lab}: for DP, {len(t['frozen'])} parameters of layers privlab.dp cannot clip were frozen "
                f"and {t['untied'] or 'no'} weights untied (see docs/llm.md)."
            )
        top = _get(results[lab]["exposure"]["curve"], reps[-1])["mean"]
        extracted = sum(c["greedy"] or c["beam"] or c["sample"] for c in results[lab]["extraction"]["canaries"])
        total = len(results[lab]["extraction"]["canaries"])
        eps = t["epsilon"]
        unit = t.get("privacy_unit", "example")  # results written before privacy units were example-level
        sec.card.append(
            CardRow(
                model=f"{t['model']} ({lab})",
                claimed=f"eps {eps:.2f}, delta {t['delta']:.1e} ({unit}-level)" if eps is not None else "none",
                measured=f"exposure {top:.1f}/{max_exp:.1f} bits at {reps[-1]} reps; "
                f"{extracted}/{total} canaries extracted",
                utility=f"val. perplexity {results[lab]['validation_perplexity']:.2f}",
                verdict="leaks" if extracted else "no canary extracted",
                ok=None if eps is None else not extracted,
            )
        )
    sec.summary = (
        "Secrets planted in the training text at controlled repetition counts; exposure (Carlini et al. 2019), "
        "extraction by greedy/beam/sampled decoding, PII games (Lukas et al. 2023) and LLM membership "
        "inference (loss, zlib, Min-K%, Min-K%++ and, with a reference model, the reference ratio) with a "
        "text-only blind baseline."
    )
    sec.data = {lab: {k: v for k, v in r.items() if k not in ("membership",)} for lab, r in results.items()}
    for lab in sec.data:
        sec.data[lab]["mia"] = {n: {"metrics": a["metrics"]} for n, a in results[lab]["mia"].items()}
    return sec
