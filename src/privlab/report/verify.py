"""Verify a report.json: its JSON Schema (``report.schema.json``, shipped with privlab), schema
version, checksum and config hash.

>>> verify_report("privlab-runs/demo/report.json").summary()                    # doctest: +SKIP
'schema privlab.report v2, sha256 9c13e2d13ec0..., 2 models, 12 attack results, 2 audits, 0 sections'

JSON Schema validation needs the ``jsonschema`` package (``pip install privlab[report]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from privlab.errors import CorruptArtifactError
from privlab.report.schema import load_report

SCHEMA_FILE = "report.schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of report.json."""
    schema: dict[str, Any] = json.loads((resources.files("privlab.report") / SCHEMA_FILE).read_text())
    return schema


def schema_errors(document: Any, limit: int = 20) -> list[str]:
    """Every place (up to ``limit``) where ``document`` breaks the report's JSON Schema, as ``path: message``."""
    try:
        import jsonschema
    except ImportError as exc:  # an optional extra
        raise ImportError(
            "Checking a report against its JSON Schema needs jsonschema: pip install privlab[report]"
        ) from exc
    validator = jsonschema.Draft202012Validator(json_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    out = []
    for e in errors[:limit]:
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        out.append(f"{where}: {e.message[:300]}")
    if len(errors) > limit:
        out.append(f"... and {len(errors) - limit} more")
    return out


@dataclass(frozen=True)
class Verified:
    """A report that passed every check."""

    path: Path
    report: dict[str, Any]

    def summary(self) -> str:
        r = self.report
        n_attacks = sum(len(m.get("attacks") or {}) for m in r["attacks"].values())
        n_audits = sum(len(a) for a in r["audits"].values())
        return (
            f"schema {r['schema']} v{r['schema_version']}, sha256 {r['sha256'][:12]}..., config hash "
            f"{r['config_hash'][:12]}..., {len(r['models'])} models, {n_attacks} attack results, "
            f"{n_audits} audits, {len(r.get('sections', {}))} sections"
        )


def verify_report(path: str | Path, *, check_schema: bool = True) -> Verified:
    """Check ``path`` against the JSON Schema (unless ``check_schema=False``) and its checksum.

    Raises :class:`~privlab.errors.CorruptArtifactError` naming every problem found.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptArtifactError(f"Cannot read report {path}: {exc}") from exc
    problems = [f"schema: {e}" for e in schema_errors(raw)] if check_schema else []
    try:
        data = load_report(path)
    except CorruptArtifactError as exc:
        problems.append(str(exc))
        data = None
    if problems or data is None:
        raise CorruptArtifactError(f"{path} failed verification:\n  " + "\n  ".join(problems))
    return Verified(path, data)
