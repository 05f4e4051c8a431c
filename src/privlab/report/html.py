"""Render a JSON privacy report (:mod:`privlab.report.schema`) as one self-contained HTML page.

Layout: a *privacy card* first (one row per model: claimed epsilon, audited lower bound, strongest
attack by TPR at the lowest resolvable FPR, utility, verdict; intervals wherever the library
computed them), then figures (log-log ROC per model from FPR 1/N, epsilon claimed vs audited as
one-sided intervals, utility), the attack and audit tables, pillar sections, ledgers, and the
configuration and environment in collapsed blocks.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from privlab.report.attack_view import attack_curves, fpr_resolution, strongest_attack
from privlab.report.figures import epsilon_figure, roc_figure, utility_figure
from privlab.report.schema import load_report
from privlab.report.sections import Section
from privlab.report.tables import (
    attack_table,
    audit_table,
    ci,
    config_block,
    fmt,
    intervals_note,
    ledger_block,
    pct,
    pretty_block,
)

__all__ = ["attack_curves", "render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1080px;margin:24px auto;color:#222;
padding:0 12px;line-height:1.35}
h1{font-size:1.5em;margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:6px 0}
th,td{border:1px solid #ddd;padding:5px 8px;text-align:left;vertical-align:top}
table.ledger{width:auto}th{background:#f4f6f7}
.card{border:2px solid #2e86c1;border-radius:8px;padding:10px 16px;background:#f8fbfd}
.ok{color:#1e8449;font-weight:600}.bad{color:#c0392b;font-weight:700}.muted{color:#666;font-size:.85em}
.ci{color:#666;font-size:.85em;white-space:nowrap}tr.strongest td{background:#fff8e1}
.figs{display:flex;flex-wrap:wrap;gap:16px}.figs figure{margin:0;max-width:100%}
figcaption{max-width:460px}
details{margin:6px 0}summary{cursor:pointer;color:#2e86c1}
pre{background:#f4f6f7;padding:8px;overflow:auto;font-size:.8em;max-height:480px}
"""


def _best_audit(audits: list[dict[str, Any]]) -> dict[str, Any] | None:
    bounds = [
        a for a in audits if a.get("confidence") is not None and isinstance(a.get("epsilon_lower_bound"), int | float)
    ]
    return max(bounds, key=lambda a: a["epsilon_lower_bound"]) if bounds else None


def _cell(x: Any) -> str:
    if isinstance(x, list | tuple) and len(x) == 2 and all(isinstance(v, int | float) for v in x):
        return ci(x).strip()
    return fmt(x)


def _section_card_rows(rep: dict[str, Any]) -> list[str]:
    rows = []
    for sec in rep.get("sections", {}).values():
        for c in Section.from_dict(sec).card:
            cls = {True: "ok", False: "bad", None: "muted"}[c.ok]
            rows.append(
                f"<tr><td><b>{html.escape(c.model)}</b></td><td>{html.escape(c.claimed)}</td>"
                f"<td>{html.escape(c.measured)}</td><td>{html.escape(c.utility)}</td>"
                f"<td><span class='{cls}'>{html.escape(c.verdict)}</span></td></tr>"
            )
    return rows


def _sections(rep: dict[str, Any]) -> str:
    parts = []
    for key, raw in rep.get("sections", {}).items():
        sec = Section.from_dict(raw)
        body = [f"<h2 id='section-{html.escape(key)}'>{html.escape(sec.title)}</h2>"]
        if sec.summary:
            body.append(f"<p>{html.escape(sec.summary)}</p>")
        if sec.figures:
            body.append(
                '<div class="figs">'
                + "".join(
                    f"<figure>{f.svg}<figcaption class='muted'>{html.escape(f.caption or f.title)}"
                    "</figcaption></figure>"
                    for f in sec.figures
                )
                + "</div>"
            )
        for t in sec.tables:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
            rows = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in t.rows)
            note = f"<p class='muted'>{html.escape(t.note)}</p>" if t.note else ""
            body.append(f"<h3>{html.escape(t.title)}</h3><table><tr>{head}</tr>{rows}</table>{note}")
        body.extend(f"<p class='muted'>{html.escape(n)}</p>" for n in sec.notes)
        parts.append(f"<section class='pillar' data-kind='{html.escape(sec.kind)}'>" + "".join(body) + "</section>")
    return "".join(parts)


def _strongest_text(mia: dict[str, Any]) -> tuple[str, str]:
    """The card cell of the strongest attack, and the footnote saying how it was chosen."""
    curves = attack_curves(mia)
    best = strongest_attack(curves)
    if best is None:
        return "–", ""
    c = curves[best.name]
    text = (
        f"<b>{html.escape(best.name)}</b>: TPR {fmt(best.tpr)}{ci(best.tpr_ci)} at {pct(best.fpr)} FPR; "
        f"AUC {fmt(c['auc'])}{ci(c['auc_ci'])}"
    )
    res = fpr_resolution(curves)
    note = f"{pct(best.fpr)} FPR" + (
        f" (N = {round(1 / res):,} non-members, resolution 1/N = {res:.2g})" if res is not None else ""
    )
    return text, note


def _card(rep: dict[str, Any]) -> str:
    rows, chosen_at, interval_notes = [], [], set()
    for name, m in rep["models"].items():
        claimed = (m.get("claimed") or {}).get("epsilon")
        delta = (m.get("claimed") or {}).get("delta")
        best = _best_audit(rep["audits"].get(name, []))
        if best is not None and best.get("violates_claim"):
            verdict = '<span class="bad">CLAIM VIOLATED: audited lower bound exceeds the claimed epsilon</span>'
        elif m.get("dp") and best is not None:
            verdict = '<span class="ok">consistent: no audit contradicts the claim</span>'
        elif m.get("dp"):
            verdict = '<span class="muted">claimed, not audited</span>'
        else:
            verdict = '<span class="bad">no formal guarantee</span>'
        audit_txt = (
            f"ε ≥ {fmt(best['epsilon_lower_bound'])} at {fmt(100 * best['confidence'])}% confidence "
            f"<span class='muted'>({html.escape(best['method'])})</span>"
            if best
            else "–"
        )
        mia = rep["attacks"].get(name, {})
        attack_txt, note = _strongest_text(mia)
        if note:
            chosen_at.append(f"{html.escape(name)}: {note}")
        if n := intervals_note(attack_curves(mia)):
            interval_notes.add(n)
        util = ", ".join(f"{html.escape(k)} {fmt(v)}" for k, v in (m.get("utility") or {}).items())
        eps_txt = f"{fmt(claimed)} (δ={fmt(delta)})" if claimed is not None else "none (not DP)"
        if (m.get("claimed") or {}).get("noise") == "seeded":
            eps_txt += (
                "<br><span class='muted'>noise seeded from the run's seed: reproducible, and not private "
                "against anyone who knows the seed (dp.secure_rng: true draws it from the OS CSPRNG)</span>"
            )
        rows.append(
            f"<tr data-model='{html.escape(name)}'><td><b>{html.escape(name)}</b></td><td>{eps_txt}</td>"
            f"<td>{audit_txt}</td><td>{attack_txt}</td><td>{util}</td><td>{verdict}</td></tr>"
        )
    at = {n.split(": ", 1)[1] for n in chosen_at}
    how = (
        "Strongest attack: the highest TPR at the lowest FPR the evaluation can resolve (1/N for N non-members; "
        + (next(iter(at)) if len(at) == 1 else "; ".join(chosen_at))
        + "). "
        if chosen_at
        else ""
    )
    return (
        '<div class="card" id="privacy-card"><h2 style="margin-top:8px;border:0">Privacy card</h2>'
        "<table><tr><th>model</th><th>claimed ε</th><th>audited ε lower bound</th>"
        "<th>strongest membership attack</th><th>utility</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
        + (
            "<table style='margin-top:8px'><tr><th>pillar result</th><th>claimed</th><th>measured</th>"
            "<th>utility</th><th>verdict</th></tr>" + "".join(extra) + "</table>"
            if (extra := _section_card_rows(rep))
            else ""
        )
        + f"<p class='muted'>{how}{' '.join(sorted(interval_notes))} A lower bound is proven at the stated "
        "confidence; a claim is violated only when a proven lower bound exceeds it. Attack TPR at low FPR is "
        "the leakage that matters (Carlini et al. 2022).</p></div>"
    )


def _figures(rep: dict[str, Any]) -> str:
    figs = []
    for model, mia in rep["attacks"].items():
        curves = attack_curves(mia)
        drawn = {a: (c["fpr"], c["tpr"], c["auc"] or 0.0) for a, c in curves.items() if c["fpr"]}
        if not drawn:
            continue
        res = fpr_resolution(curves)
        n_in = max((int(c["n_members"]) for c in curves.values() if c.get("n_members")), default=0)
        svg = roc_figure(
            drawn, f"membership inference: {model}", fpr_floor=res or 1e-5, tpr_floor=1 / n_in if n_in else None
        )
        cap = (
            f"FPR axis starts at 1/N = {res:.2g} ({round(1 / res):,} non-members): lower FPRs cannot be resolved."
            if res
            else ""
        )
        figs.append(f'<figure class="roc">{svg}<figcaption class="muted">{html.escape(cap)}</figcaption></figure>')
    eps_rows = []
    for model, audits in rep["audits"].items():
        for a in audits:
            lb, claimed = a.get("epsilon_lower_bound"), a.get("claimed_epsilon")
            if isinstance(lb, int | float) and isinstance(claimed, int | float):
                eps_rows.append((f"{model}: {a['method']}", claimed, lb, a.get("confidence")))
    if eps_rows:
        figs.append(f'<figure class="epsilon">{epsilon_figure(eps_rows)}</figure>')
    acc = {
        m: v["utility"]["test_accuracy"]
        for m, v in rep["models"].items()
        if "test_accuracy" in (v.get("utility") or {})
    }
    if acc:
        figs.append(f'<figure class="utility">{utility_figure(acc, "test_accuracy")}</figure>')
    return '<div class="figs">' + "".join(figs) + "</div>"


def render_html(report: dict[str, Any] | str | Path, out: str | Path | None = None) -> str:
    """Render a report dict (or the path of its verified JSON) to HTML; write it to ``out`` if given."""
    rep = load_report(report) if isinstance(report, str | Path) else report
    ledgers = "".join(ledger_block(k, v.get("ledger")) for k, v in rep["models"].items())
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(rep['title'])}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(rep['title'])}</h1>"
        f"<p class='muted'>privlab privacy report · created {html.escape(rep['created'])} · config "
        f"<code>{rep['config_hash'][:12]}</code> · report sha256 <code>{rep.get('sha256', '')[:12]}</code> "
        "(check with <code>privlab report verify report.json</code>)</p>"
        + _card(rep)
        + "<h2>Figures</h2>"
        + _figures(rep)
        + "<h2>Membership-inference attacks</h2>"
        + "".join(attack_table(m, mia) for m, mia in rep["attacks"].items())
        + "<h2>Privacy audits</h2>"
        + ("".join(audit_table(m, a) for m, a in rep["audits"].items()) or "<p class='muted'>No audits.</p>")
        + _sections(rep)
        + "<h2>Privacy ledgers</h2>"
        + ledgers
        + "<h2>Configuration</h2>"
        + config_block(rep["config"], rep["config_hash"])
        + "<h2>Environment</h2>"
        + pretty_block(rep["environment"], "Python, platform and package versions: show")
        + "</body></html>"
    )
    if out is not None:
        Path(out).write_text(page)
    return page
