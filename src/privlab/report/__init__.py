"""The privacy report: a versioned, checksummed JSON document and its self-contained HTML page.

>>> from privlab.report import PrivacyReport, ModelEntry, render_html   # doctest: +SKIP
>>> rep = PrivacyReport(title="My model", config={...}); rep.models["target"] = ModelEntry(...)
>>> rep.save("report.json"); render_html("report.json", "report.html")
"""

from privlab.report.html import attack_curves, render_html
from privlab.report.schema import (
    REPORT_SCHEMA_VERSION,
    ModelEntry,
    PrivacyReport,
    canonical_json,
    config_hash,
    load_report,
)

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "ModelEntry",
    "PrivacyReport",
    "attack_curves",
    "canonical_json",
    "config_hash",
    "load_report",
    "render_html",
]
