"""report.json's JSON Schema and `privlab report verify`: valid reports pass, tampered or malformed ones fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privlab.cli.main import app
from privlab.errors import CorruptArtifactError
from privlab.report import CardRow, ModelEntry, PrivacyReport, Section, Table
from privlab.report.schema import canonical_json
from privlab.report.verify import json_schema, schema_errors, verify_report

pytest.importorskip("jsonschema")
runner = CliRunner()


def _report(tmp_path: Path) -> Path:
    rep = PrivacyReport(title="t", config={"seed": 0})
    rep.models["m"] = ModelEntry(dp=False, utility={"test_accuracy": 0.9})
    rep.sections["s"] = Section("kind", "title", tables=[Table("t", ["a"], [[[0.1, 0.2]]])],
                                card=[CardRow("m", verdict="ok", ok=True)]).to_dict()
    return rep.save(tmp_path / "report.json")


def _resign(data: dict) -> dict:
    import hashlib

    body = {k: v for k, v in data.items() if k != "sha256"}
    return body | {"sha256": hashlib.sha256(canonical_json(body).encode()).hexdigest()}


def test_schema_is_shipped_and_valid() -> None:
    import jsonschema

    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"] == {"const": "privlab.report"}


def test_valid_report_passes_and_cli_says_ok(tmp_path: Path) -> None:
    path = _report(tmp_path)
    assert verify_report(path).report["schema_version"] == 2
    res = runner.invoke(app, ["report", "verify", str(path)])
    assert res.exit_code == 0 and res.output.startswith("OK ") and "1 models" in res.output


def test_v1_report_without_sections_passes(tmp_path: Path) -> None:
    data = json.loads(_report(tmp_path).read_text())
    data.pop("sections")
    data["schema_version"] = 1
    assert schema_errors(_resign(data)) == []


def test_tampering_fails_the_checksum(tmp_path: Path) -> None:
    path = _report(tmp_path)
    data = json.loads(path.read_text())
    data["models"]["m"]["utility"]["test_accuracy"] = 0.99
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptArtifactError, match="checksum"):
        verify_report(path)
    res = runner.invoke(app, ["report", "verify", str(path)])
    assert res.exit_code == 1 and "checksum mismatch" in res.output


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda d: d["models"]["m"].update(dp="yes"), "models.m.dp"),
        (lambda d: d.update(extra=1), "(top level)"),
        (lambda d: d["sections"]["s"]["figures"].append({"title": "f", "svg": "<png>"}), "sections.s.figures.0.svg"),
        (lambda d: d.update(config_hash="abc"), "config_hash"),
    ],
)
def test_malformed_but_resigned_report_fails_the_schema(tmp_path: Path, edit, where: str) -> None:
    """Re-signing defeats the checksum; the schema still names the bad field."""
    path = _report(tmp_path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(_resign(data)))
    with pytest.raises(CorruptArtifactError, match=f"schema: {where.replace('(', '[(]').replace(')', '[)]')}"):
        verify_report(path)
    assert verify_report.__name__  # the --no-schema path below skips only the schema
    res = runner.invoke(app, ["report", "verify", "--no-schema", str(path)])
    assert ("schema:" not in res.output) and (res.exit_code in (0, 1))
