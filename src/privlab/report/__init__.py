"""The privacy report: a versioned, checksummed JSON document and its self-contained HTML page.

>>> from privlab.report import PrivacyReport, ModelEntry, render_html   # doctest: +SKIP
>>> rep = PrivacyReport(title="My model", config={...}); rep.models["target"] = ModelEntry(...)
>>> rep.save("report.json"); render_html("report.json", "report.html")
"""

from privlab.report.attack_view import attack_curves, strongest_attack
from privlab.report.html import render_html
from privlab.report.schema import (
    REPORT_SCHEMA_VERSION,
    ModelEntry,
    PrivacyReport,
    canonical_json,
    config_hash,
    load_report,
)
from privlab.report.sections import CardRow, Figure, Section, Table, svg_of

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "CardRow",
    "Figure",
    "ModelEntry",
    "PrivacyReport",
    "Section",
    "Table",
    "attack_curves",
    "canonical_json",
    "config_hash",
    "load_report",
    "render_html",
    "strongest_attack",
    "svg_of",
]
