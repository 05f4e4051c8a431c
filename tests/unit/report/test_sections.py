"""Pillar sections of the report: round trip through the checksummed JSON, generic HTML, refusal of bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from privlab.errors import CorruptArtifactError
from privlab.report import CardRow, Figure, PrivacyReport, Section, Table, load_report, render_html, svg_of


def _section() -> Section:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    return Section(
        kind="unlearning",
        title="Machine <unlearning>",
        summary="forget 1% of MNIST",
        tables=[Table("Methods", ["method", "forget acc.", "TPR@1%FPR"], [["retrain", 0.912, [0.01, 0.02]]])],
        figures=[Figure("curve", svg_of(fig), caption="a caption")],
        notes=["a note"],
        card=[CardRow(model="sisa", claimed="exact", measured="U-LiRA 1.1%", verdict="at chance", ok=True)],
        data={"methods": {"retrain": {"forget_accuracy": 0.912}}},
    )


def test_section_round_trip_and_html(tmp_path: Path) -> None:
    rep = PrivacyReport(title="t", config={"a": 1})
    rep.sections["unlearning"] = _section().to_dict()
    data = load_report(rep.save(tmp_path / "r.json"))
    assert data["schema_version"] == 2
    assert Section.from_dict(data["sections"]["unlearning"]).tables[0].rows[0][0] == "retrain"
    page = render_html(data)
    assert "Machine &lt;unlearning&gt;" in page and "[0.01, 0.02]" in page and "a caption" in page
    assert "U-LiRA 1.1%" in page and page.count("<svg") >= 1


def test_v1_report_without_sections_still_reads(tmp_path: Path) -> None:
    rep = PrivacyReport(title="t", config={})
    body = rep.to_dict()
    body.pop("sections")
    body["schema_version"] = 1
    import hashlib

    from privlab.report import canonical_json

    body.pop("sha256")
    body["sha256"] = hashlib.sha256(canonical_json(body).encode()).hexdigest()
    (tmp_path / "v1.json").write_text(json.dumps(body))
    assert load_report(tmp_path / "v1.json")["sections"] == {}


def test_bad_sections_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="row 0 has 1 cells, expected 2"):
        Table("t", ["a", "b"], [[1]])
    with pytest.raises(ValueError, match="svg"):
        Figure("f", "<png>")
    rep = PrivacyReport(title="t", config={})
    rep.sections["x"] = {"kind": "x"}  # no schema version, no title
    with pytest.raises(CorruptArtifactError, match="section 'x'"):
        load_report(rep.save(tmp_path / "bad.json"))
