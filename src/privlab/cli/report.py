"""Check and render privacy reports: ``privlab report verify FILE``, ``privlab report html FILE``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from privlab.errors import CorruptArtifactError

app = typer.Typer(no_args_is_help=True)


@app.command("verify")
def verify(
    file: Path = typer.Argument(..., help="A report.json written by privlab."),
    schema: bool = typer.Option(True, help="Also check the report against its JSON Schema (needs jsonschema)."),
) -> None:
    """Check a report's JSON Schema, schema version, checksum and config hash; exit 1 if any fails."""
    from privlab.report.verify import verify_report

    try:
        ok = verify_report(file, check_schema=schema)
    except CorruptArtifactError as exc:
        typer.echo(f"FAILED: {exc}", err=True)
        raise typer.Exit(1) from exc
    except ImportError as exc:
        typer.echo(f"error: {exc} (or pass --no-schema to check only the checksum)", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"OK {file}: {ok.summary()}" + ("" if schema else " (JSON Schema not checked)"))


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of report.json."""
    from privlab.report.verify import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command("html")
def html(
    file: Path = typer.Argument(..., help="A report.json written by privlab."),
    out: Path | None = typer.Option(None, help="Output HTML file (default: FILE with .html)."),
) -> None:
    """Render a verified report.json as its self-contained HTML page."""
    from privlab.report import render_html

    target = out or file.with_suffix(".html")
    try:
        render_html(file, target)
    except CorruptArtifactError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {target}")
