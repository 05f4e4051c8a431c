"""The card's strongest attack (TPR at the lowest resolvable FPR, not AUC), clipping at FPR 1/N,
intervals in the HTML, and a readable audit table with no cut JSON."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from privlab.attacks import evaluate_scores
from privlab.audit import AuditResult
from privlab.report import ModelEntry, PrivacyReport, attack_curves, load_report, render_html, strongest_attack
from privlab.report.attack_view import fpr_resolution, resolvable_fprs


def _scores(n: int, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """'broad': a mean shift (high AUC, few confident hits); 'tail': 3% of members far out (high TPR at low FPR)."""
    rng = np.random.default_rng(seed)
    member = rng.random(n) < 0.5
    s = rng.normal(size=n)
    if kind == "broad":
        s = s + 0.8 * member
    else:
        hit = member & (rng.random(n) < 0.03)
        s = s + 10.0 * hit
    return s, member


def _mia(n: int, kinds: dict[str, str]) -> dict:
    attacks = {}
    for i, (name, kind) in enumerate(kinds.items()):
        s, m = _scores(n, kind, seed=i)
        attacks[name] = {"metrics": evaluate_scores(s, m, n_bootstrap=30, seed=i).to_dict()}
    return {"schema": "privlab.attacks.mia_result", "version": 1, "attacks": attacks}


def test_strongest_is_chosen_by_low_fpr_tpr_not_auc() -> None:
    curves = attack_curves(_mia(4000, {"broad": "broad", "tail": "tail"}))
    assert curves["broad"]["auc"] > curves["tail"]["auc"] + 0.1  # AUC would pick "broad"
    best = strongest_attack(curves)
    assert best is not None and best.name == "tail"
    assert best.fpr == 0.001  # ~2,000 non-members resolve 1e-3 but not 1e-4
    assert best.tpr > 0.02 and best.tpr_ci is not None and best.tpr_ci[0] <= best.tpr <= best.tpr_ci[1]


def test_negative_control_same_kind_falls_back_to_auc_order() -> None:
    """Two broad attacks with no TPR at low FPR: the tie-breakers (higher FPRs, then AUC) decide."""
    curves = attack_curves(_mia(4000, {"a": "broad", "b": "broad"}))
    best = strongest_attack(curves)
    assert best is not None
    key = [max(curves, key=lambda n, f=f: curves[n]["tpr_at"][str(f)]) for f in (0.001, 0.01, 0.1)]
    assert best.name in key


@pytest.mark.parametrize(("n", "lowest"), [(600, 0.01), (4000, 0.001), (60_000, 0.0001)])
def test_resolvable_fprs_follow_the_number_of_non_members(n: int, lowest: float) -> None:
    curves = attack_curves(_mia(n, {"loss": "broad"}))
    res = fpr_resolution(curves)
    assert res == pytest.approx(1 / curves["loss"]["n_nonmembers"])
    assert min(resolvable_fprs(curves)) == lowest


def _report(n: int) -> PrivacyReport:
    rep = PrivacyReport(title="view", config={"seed": 0})
    rep.models["m"] = ModelEntry(dp=True, utility={"test_accuracy": 0.9}, claimed={"epsilon": 2.0, "delta": 1e-5})
    rep.attacks["m"] = _mia(n, {"broad": "broad", "tail": "tail"})
    details = {"m": 1000, "guesses": 100, "correct": 90, "grid": [{"k_plus": k, "guesses": 2 * k} for k in range(80)]}
    rep.audits["m"] = [AuditResult("one_run", 1.45, 0.95, 1e-5, details, claimed_epsilon=2.0).to_dict()]
    return rep


def test_html_shows_intervals_clips_fprs_and_a_readable_audit(tmp_path: Path) -> None:
    page = render_html(load_report(_report(4000).save(tmp_path / "r.json")))
    card = page[page.index('id="privacy-card"') : page.index("<h2>Figures")]
    assert "<b>tail</b>: TPR" in card and "at 0.1% FPR" in card
    assert re.search(r"TPR [\d.]+ <span class='ci'>\[[\d.e-]+, [\d.e-]+\]</span>", card)
    assert "ε ≥ 1.45 at 95% confidence" in card
    tables = page[page.index("<h2>Membership-inference attacks") : page.index("<h2>Privacy audits")]
    assert "TPR@0.1%FPR" in tables and "TPR@0.01%FPR" not in tables  # 1e-4 < 1/N: not shown
    assert "cannot be resolved" in tables and tables.count("class='ci'") >= 2 * 5
    assert "class='strongest'><td>tail</td>" in tables
    audits = page[page.index("<h2>Privacy audits") : page.index("<h2>Privacy ledgers")]
    assert re.search(r"<td>one_run</td><td>ε ≥ 1.45</td><td>95%</td><td>2</td><td>1e-05</td>"
                     r"<td>1000</td><td>100</td><td>90</td>", audits)
    assert "<details>" in audits and "&quot;k_plus&quot;: 79" in audits  # the whole record, not cut
    assert "<details><summary>configuration" in page


def test_large_evaluations_show_the_lowest_fpr(tmp_path: Path) -> None:
    page = render_html(load_report(_report(60_000).save(tmp_path / "r.json")))
    assert "TPR@0.01%FPR" in page and "is not shown" not in page
