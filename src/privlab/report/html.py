"""Render a JSON privacy report (:mod:`privlab.report.schema`) as one self-contained HTML page.

Layout: a *privacy card* first (one row per model: claimed epsilon, audited lower bound, strongest
attack, utility, verdict), then figures (log-log ROC per model, epsilon claimed vs audited,
utility), then the detail tables, the configuration and the environment.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from privlab.report.figures import epsilon_figure, roc_figure, utility_figure
from privlab.report.schema import load_report
from privlab.report.sections import Section

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1080px;margin:24px auto;color:#222;
padding:0 12px}
h1{font-size:1.5em;margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{border:1px solid #ddd;padding:5px 8px;text-align:left}
th{background:#f4f6f7}.card{border:2px solid #2e86c1;border-radius:8px;padding:10px 16px;background:#f8fbfd}
.ok{color:#1e8449;font-weight:600}.bad{color:#c0392b;font-weight:700}.muted{color:#777;font-size:.85em}
.figs{display:flex;flex-wrap:wrap;gap:16px}.figs figure{margin:0}
pre{background:#f4f6f7;padding:8px;overflow:auto;font-size:.8em}
"""


def _f(x: Any, nd: int = 3) -> str:
    if isinstance(x, int | float):
        return f"{x:.{nd}g}" if abs(x) < 1e4 else f"{x:.3e}"
    return html.escape(str(x)) if x is not None else "–"


def attack_curves(mia: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Normalise an attack result JSON (``privlab.attacks.MIAResult.to_dict``) to
    ``{attack: {auc, fpr, tpr, tpr_at: {fpr: value}, balanced_accuracy}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, entry in (mia.get("attacks") or {}).items():
        m = entry.get("metrics", {})
        roc = m.get("roc") or {}
        tpr_at: dict[str, Any] = {}
        for k, v in (m.get("tpr_at_fpr") or {}).items():
            tpr_at[str(k)] = v.get("value", v.get("estimate")) if isinstance(v, dict) else v
        out[name] = {
            "auc": m.get("auc"),
            "fpr": roc.get("fpr", []),
            "tpr": roc.get("tpr", []),
            "tpr_at": tpr_at,
            "balanced_accuracy": m.get("balanced_accuracy"),
        }
    return out


def _tpr_at(curve: dict[str, Any], fpr: float) -> float | None:
    for k, v in curve["tpr_at"].items():
        try:
            if abs(float(k) - fpr) < 1e-12 and isinstance(v, int | float):
                return float(v)
        except ValueError:
            continue
    return None


def _best_audit(audits: list[dict[str, Any]]) -> dict[str, Any] | None:
    bounds = [
        a for a in audits if a.get("confidence") is not None and isinstance(a.get("epsilon_lower_bound"), int | float)
    ]
    return max(bounds, key=lambda a: a["epsilon_lower_bound"]) if bounds else None


def _cell(x: Any) -> str:
    if isinstance(x, list | tuple) and len(x) == 2 and all(isinstance(v, int | float) for v in x):
        return f"[{_f(x[0])}, {_f(x[1])}]"
    return _f(x)


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


def _card(rep: dict[str, Any]) -> str:
    rows = []
    for name, m in rep["models"].items():
        claimed = (m.get("claimed") or {}).get("epsilon")
        delta = (m.get("claimed") or {}).get("delta")
        best = _best_audit(rep["audits"].get(name, []))
        curves = attack_curves(rep["attacks"].get(name, {}))
        strongest = max(curves.items(), key=lambda kv: kv[1]["auc"] or 0, default=None)
        if best is not None and best.get("violates_claim"):
            verdict = '<span class="bad">CLAIM VIOLATED: audited lower bound exceeds the claimed epsilon</span>'
        elif m.get("dp") and best is not None:
            verdict = '<span class="ok">consistent: no audit contradicts the claim</span>'
        elif m.get("dp"):
            verdict = '<span class="muted">claimed, not audited</span>'
        else:
            verdict = '<span class="bad">no formal guarantee</span>'
        audit_txt = (
            f"{_f(best['epsilon_lower_bound'])} ({html.escape(best['method'])}, "
            f"{_f(100 * best['confidence'], 3)}% conf.)"
            if best
            else "–"
        )
        attack_txt = (
            f"{html.escape(strongest[0])}: AUC {_f(strongest[1]['auc'])}, "
            f"TPR@0.1%FPR {_f(_tpr_at(strongest[1], 0.001))}"
            if strongest
            else "–"
        )
        util = ", ".join(f"{k} {_f(v)}" for k, v in (m.get("utility") or {}).items())
        eps_txt = f"{_f(claimed)} (δ={_f(delta)})" if claimed is not None else "none (not DP)"
        rows.append(
            f"<tr><td><b>{html.escape(name)}</b></td><td>{eps_txt}</td><td>{audit_txt}</td>"
            f"<td>{attack_txt}</td><td>{util}</td><td>{verdict}</td></tr>"
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
        + "<p class='muted'>A lower bound is proven at the stated confidence; a claim is violated "
        "only when a proven lower bound exceeds it. Attack TPR at low FPR is the leakage that matters "
        "(Carlini et al. 2022).</p></div>"
    )


def _attack_tables(rep: dict[str, Any]) -> str:
    parts = []
    for model, mia in rep["attacks"].items():
        curves = attack_curves(mia)
        rows = "".join(
            f"<tr><td>{html.escape(a)}</td><td>{_f(c['auc'])}</td><td>{_f(c['balanced_accuracy'])}</td>"
            f"<td>{_f(_tpr_at(c, 0.1))}</td><td>{_f(_tpr_at(c, 0.01))}</td><td>{_f(_tpr_at(c, 0.001))}</td></tr>"
            for a, c in curves.items()
        )
        refs = mia.get("references") or {}
        note = (
            f"<p class='muted'>{_f(refs.get('count'))} reference models, trained "
            f"{html.escape(str(refs['trained']))}</p>"
            if refs.get("trained")
            else ""
        )
        parts.append(
            f"<h3>{html.escape(model)}</h3>{note}<table><tr><th>attack</th><th>AUC</th><th>balanced acc.</th>"
            f"<th>TPR@10%FPR</th><th>TPR@1%FPR</th><th>TPR@0.1%FPR</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _audit_tables(rep: dict[str, Any]) -> str:
    parts = []
    for model, audits in rep["audits"].items():
        rows = "".join(
            f"<tr><td>{html.escape(str(a.get('method')))}</td><td>{_f(a.get('epsilon_lower_bound'))}</td>"
            f"<td>{_f(a.get('confidence'))}</td><td>{_f(a.get('delta'))}</td><td>{_f(a.get('claimed_epsilon'))}</td>"
            f"<td>{'<span class=bad>yes</span>' if a.get('violates_claim') else 'no'}</td>"
            f"<td class='muted'>{html.escape(str(a.get('test', '')))} "
            f"{html.escape(json.dumps(a.get('details', {}))[:300])}</td></tr>"
            for a in audits
        )
        parts.append(
            f"<h3>{html.escape(model)}</h3><table><tr><th>method</th><th>ε lower bound</th><th>confidence</th>"
            f"<th>δ</th><th>claimed ε</th><th>violated</th><th>test</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _figures(rep: dict[str, Any]) -> str:
    figs = []
    for model, mia in rep["attacks"].items():
        curves = {a: (c["fpr"], c["tpr"], c["auc"] or 0.0) for a, c in attack_curves(mia).items() if c["fpr"]}
        if curves:
            figs.append(f'<figure class="roc">{roc_figure(curves, f"membership inference: {model}")}</figure>')
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
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(rep['title'])}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(rep['title'])}</h1>"
        f"<p class='muted'>privlab privacy report · created {html.escape(rep['created'])} · config "
        f"<code>{rep['config_hash'][:12]}</code> · report sha256 <code>{rep.get('sha256', '')[:12]}</code></p>"
        + _card(rep)
        + "<h2>Figures</h2>"
        + _figures(rep)
        + "<h2>Membership-inference attacks</h2>"
        + _attack_tables(rep)
        + "<h2>Privacy audits</h2>"
        + _audit_tables(rep)
        + _sections(rep)
        + "<h2>Configuration</h2><pre>"
        + html.escape(json.dumps(rep["config"], indent=2))
        + "</pre>"
        + "<h2>Privacy ledgers</h2><pre>"
        + html.escape(json.dumps({k: v.get("ledger") for k, v in rep["models"].items()}, indent=2))
        + "</pre>"
        + "<h2>Environment</h2><pre>"
        + html.escape(json.dumps(rep["environment"], indent=2))
        + "</pre>"
        + "</body></html>"
    )
    if out is not None:
        Path(out).write_text(page)
    return page
