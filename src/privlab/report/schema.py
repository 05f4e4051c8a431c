"""The versioned JSON privacy report: what was claimed, what was measured, and how.

A report is a plain JSON document (no pickle) with these top-level keys::

    schema            "privlab.report"
    schema_version    REPORT_SCHEMA_VERSION
    created           ISO-8601 UTC timestamp
    title             free text
    config            the exact configuration that produced it
    config_hash       SHA-256 of the canonical config JSON
    environment       machine and package versions (privlab.report.environment)
    models            {name: {"dp": bool, "claimed": {epsilon, delta, accountant} | None,
                              "ledger": ledger JSON | None, "utility": {metric: value}}}
    attacks           {model name: MIA result JSON (privlab.attacks) without per-example arrays,
                       plus per_example_scores: the cached file that holds them}
    audits            {model name: [audit result JSON (privlab.audit)]}
    sections          {key: pillar section JSON (privlab.report.sections.Section.to_dict)}  (v2)
    sha256            SHA-256 of everything above (tamper evidence)

:func:`load_report` refuses a document whose schema, version or checksum does not check out.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privlab._json import canonical_json as canonical_json  # re-exported: privlab.report.canonical_json
from privlab._json import check_sealed, jsonable, seal, sha256_of
from privlab.errors import CorruptArtifactError
from privlab.report.environment import environment
from privlab.report.sections import Section

REPORT_SCHEMA = "privlab.report"
REPORT_SCHEMA_VERSION = 2
# Versions this privlab reads: v1 reports have no "sections" (read as empty).
READABLE_SCHEMA_VERSIONS = (1, 2)


def config_hash(config: Any) -> str:
    """SHA-256 of the canonical JSON of ``config``."""
    return sha256_of(config)


@dataclass
class ModelEntry:
    """One evaluated model: its privacy claim (if trained with DP) and its utility."""

    dp: bool
    utility: dict[str, float]
    claimed: dict[str, Any] | None = None
    ledger: dict[str, Any] | None = None


@dataclass
class PrivacyReport:
    """Everything a reviewer needs, as one versioned document."""

    title: str
    config: dict[str, Any]
    models: dict[str, ModelEntry] = field(default_factory=dict)
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    audits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=environment)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = jsonable(
            {
                "schema": REPORT_SCHEMA,
                "schema_version": REPORT_SCHEMA_VERSION,
                "created": self.created,
                "title": self.title,
                "config": self.config,
                "config_hash": config_hash(self.config),
                "environment": self.environment,
                "models": {
                    k: {"dp": m.dp, "utility": m.utility, "claimed": m.claimed, "ledger": m.ledger}
                    for k, m in self.models.items()
                },
                "attacks": self.attacks,
                "audits": self.audits,
                "sections": self.sections,
            }
        )
        return seal(body)

    def save(self, path: str | Path) -> Path:
        """Write the JSON report atomically."""
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path


def load_report(path: str | Path) -> dict[str, Any]:
    """Read and verify a JSON report (schema, version, checksum, config hash)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptArtifactError(f"Cannot read report {path}: {exc}") from exc
    check_sealed(data, schema=REPORT_SCHEMA, versions=READABLE_SCHEMA_VERSIONS, what=f"report {path}")
    if config_hash(data["config"]) != data.get("config_hash"):
        raise CorruptArtifactError(f"{path}: config_hash does not match the config it carries.")
    data.setdefault("sections", {})
    for key, sec in data["sections"].items():
        try:
            Section.from_dict(sec)
        except CorruptArtifactError as exc:
            raise CorruptArtifactError(f"{path}: section {key!r}: {exc}") from exc
    return data
