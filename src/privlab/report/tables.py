"""HTML fragments of the report's detail tables: attacks (with intervals, clipped at the resolvable
FPR), audits (readable columns, the full test record behind a ``<details>``), ledgers, config."""

from __future__ import annotations

import html
import json
from typing import Any

import yaml

from privlab.report.attack_view import (
    attack_curves,
    fpr_resolution,
    reported_fprs,
    resolvable_fprs,
    strongest_attack,
    tpr_at,
)


def fmt(x: Any, nd: int = 3) -> str:
    """A number with ``nd`` significant digits (scientific beyond 1e4), text escaped, None as a dash."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 1e4 else str(x)
    if isinstance(x, float):
        return f"{x:.{nd}g}" if abs(x) < 1e4 else f"{x:.3e}"
    return html.escape(str(x)) if x is not None else "–"


def ci(pair: Any, nd: int = 3) -> str:
    """An interval ``[low, high]`` as a muted span (empty when there is none)."""
    if isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(v, int | float) for v in pair):
        return f" <span class='ci'>[{fmt(float(pair[0]), nd)}, {fmt(float(pair[1]), nd)}]</span>"
    return ""


def pct(f: float) -> str:
    """An FPR as a percentage label: 0.001 -> '0.1%'."""
    return f"{100 * f:g}%"


def pretty_block(obj: Any, summary: str) -> str:
    """``obj`` as indented JSON in a collapsed ``<details>`` block."""
    return (
        f"<details><summary>{html.escape(summary)}</summary><pre>"
        + html.escape(json.dumps(obj, indent=2, sort_keys=True))
        + "</pre></details>"
    )


def intervals_note(curves: dict[str, dict[str, Any]]) -> str:
    """How the attack intervals were computed (from the result itself)."""
    c = next(iter(curves.values()), None)
    if c is None or c.get("confidence") is None:
        return ""
    n = c.get("n_bootstrap")
    return (
        f"Intervals: {fmt(100 * float(c['confidence']))}% percentile-bootstrap intervals over examples"
        + (f" ({n} resamples)" if n else "")
        + "."
    )


def resolution_note(curves: dict[str, dict[str, Any]]) -> str:
    """Why TPR below ``1 / N`` FPR is not shown (empty when every reported FPR is resolvable)."""
    res = fpr_resolution(curves)
    hidden = [f for f in reported_fprs(curves) if f not in resolvable_fprs(curves)]
    if res is None or not hidden:
        return ""
    n = round(1 / res)
    return (
        f"TPR at {', '.join(pct(f) for f in hidden)} FPR is not shown: with {n:,} non-members the smallest "
        f"non-zero FPR is 1/{n:,} = {res:.2g}, so lower FPRs cannot be resolved (report.json keeps the values)."
    )


def attack_table(model: str, mia: dict[str, Any]) -> str:
    """One model's attacks: AUC, balanced accuracy and TPR at each resolvable FPR, each with its interval."""
    curves = attack_curves(mia)
    fprs = resolvable_fprs(curves)
    best = strongest_attack(curves)
    head = "<th>attack</th><th>AUC</th><th>balanced acc.</th>" + "".join(f"<th>TPR@{pct(f)}FPR</th>" for f in fprs)
    rows = []
    for a, c in curves.items():
        cells = [
            f"{fmt(c['auc'])}{ci(c['auc_ci'])}",
            f"{fmt(c['balanced_accuracy'])}{ci(c['balanced_accuracy_ci'])}",
        ]
        for f in fprs:
            v, iv = tpr_at(c, f)
            cells.append(f"{fmt(v)}{ci(iv)}")
        cls = " class='strongest'" if best is not None and best.name == a else ""
        rows.append(f"<tr{cls}><td>{html.escape(a)}</td>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    refs = mia.get("references") or {}
    notes = []
    if refs.get("trained"):
        notes.append(f"{fmt(refs.get('count'))} reference models, trained {html.escape(str(refs['trained']))}.")
    if best is not None:
        notes.append(f"Highlighted: the strongest attack (highest TPR at {pct(best.fpr)} FPR).")
    notes.extend(html.escape(n) for n in (intervals_note(curves), resolution_note(curves)) if n)
    return (
        f"<h3>{html.escape(model)}</h3><table class='attacks'><tr>{head}</tr>{''.join(rows)}</table>"
        + (f"<p class='muted'>{' '.join(notes)}</p>" if notes else "")
    )


def _audit_counts(d: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(canaries, guesses, correct) from an audit's details (one-run: m, guesses, correct; multi-run: runs)."""
    if "m" in d:
        return d.get("m"), d.get("guesses"), d.get("correct")
    if "n_in" in d and "n_out" in d:
        n = int(d["n_in"]) + int(d["n_out"])
        wrong = int(d.get("false_positives", 0)) + int(d.get("false_negatives", 0))
        return f"{n} runs", n, n - wrong
    return d.get("canaries"), d.get("guesses"), d.get("correct")


def audit_table(model: str, audits: list[dict[str, Any]]) -> str:
    """One model's audits: method, bound, confidence, canaries, guesses, correct; the full record collapsed."""
    rows, records = [], []
    for a in audits:
        canaries, guesses, correct = _audit_counts(a.get("details") or {})
        conf = a.get("confidence")
        bound = (
            f"ε ≥ {fmt(a.get('epsilon_lower_bound'))}" if conf is not None else f"{fmt(a.get('epsilon_lower_bound'))}"
        )
        verdict = (
            "<span class='bad'>violated</span>"
            if a.get("violates_claim")
            else (
                f"<span class='muted'>underpowered (could prove at most ε ≥ {fmt(a.get('power_epsilon'))})</span>"
                if a.get("verdict") == "underpowered"
                else "consistent"
                if conf is not None
                else "<span class='muted'>estimate only</span>"
            )
        )
        rows.append(
            f"<tr><td>{html.escape(str(a.get('method')))}</td><td>{bound}</td>"
            f"<td>{fmt(100 * conf) + '%' if isinstance(conf, int | float) else 'none (point estimate)'}</td>"
            f"<td>{fmt(a.get('claimed_epsilon'))}</td><td>{fmt(a.get('delta'))}</td><td>{fmt(canaries)}</td>"
            f"<td>{fmt(guesses)}</td><td>{fmt(correct)}</td><td>{verdict}</td></tr>"
        )
        test = f"<p>{html.escape(str(a['test']))}</p>" if a.get("test") else ""
        records.append(
            f"<details><summary>{html.escape(str(a.get('method')))}: the test and its full record</summary>"
            f"{test}<pre>{html.escape(json.dumps(a, indent=2, sort_keys=True))}</pre></details>"
        )
    return (
        f"<h3>{html.escape(model)}</h3><table class='audits'><tr><th>method</th><th>audited ε (lower bound)</th>"
        "<th>confidence</th><th>claimed ε</th><th>δ</th><th>canaries</th><th>guesses</th><th>correct</th>"
        f"<th>verdict</th></tr>{''.join(rows)}</table>"
        "<p class='muted'>A lower bound ε ≥ b at confidence c is the one-sided interval [b, ∞): with probability "
        "at least c over the audit's randomness the mechanism is not (ε, δ)-DP for any ε below b.</p>"
        + "".join(records)
    )


def ledger_block(name: str, ledger: dict[str, Any] | None) -> str:
    """A model's privacy ledger: one readable row per recorded mechanism, the checksummed JSON collapsed."""
    if not ledger:
        return f"<p><b>{html.escape(name)}</b>: no ledger (not trained with DP).</p>"
    entries = "".join(
        f"<tr><td>{fmt(e.get('noise_multiplier'), 4)}</td><td>{fmt(e.get('sample_rate'), 4)}</td>"
        f"<td>{fmt(e.get('steps'))}</td></tr>"
        for e in ledger.get("entries", [])
    )
    return (
        f"<p><b>{html.escape(name)}</b>: {html.escape(str(ledger.get('mechanism', '')))}, "
        f"{html.escape(str(ledger.get('neighbouring_relation', '')))} "
        f"{html.escape(str(ledger.get('privacy_unit', 'example')))}; ε = {fmt(ledger.get('epsilon'), 4)} at "
        f"δ = {fmt(ledger.get('delta'))} ({html.escape(str(ledger.get('accountant', '')))} accountant)</p>"
        f"<table class='ledger'><tr><th>noise multiplier σ</th><th>sample rate q</th><th>steps</th></tr>{entries}"
        "</table>" + pretty_block(ledger, f"{name}: ledger JSON (sha256 {str(ledger.get('sha256', ''))[:12]})")
    )


def config_block(config: dict[str, Any], config_hash: str) -> str:
    """The run configuration as YAML in a collapsed block."""
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    return (
        f"<details><summary>configuration (config hash {html.escape(config_hash[:12])}): show</summary>"
        f"<pre>{html.escape(text)}</pre></details>"
    )
