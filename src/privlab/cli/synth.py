"""``privlab synth CONFIG.yaml``: DP synthetic Adult releases, their evaluation and a report."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from privlab.errors import ConfigError, DataUnavailableError, InvalidParameterError


def synth_cmd(
    config: Path = typer.Argument(..., help="YAML file: name, output_dir and a 'synthetic:' mapping."),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="Override the config's output_dir."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Fit every configured generator at every epsilon, attack the releases, write report.json/html."""
    from privlab.pipeline.config import _build
    from privlab.report import PrivacyReport, render_html
    from privlab.synth.config import SynthCommandConfig
    from privlab.synth.experiment import run_synthetic
    from privlab.synth.section import synth_section

    try:
        if not config.exists():
            raise ConfigError(f"config file {config} does not exist.")
        data = yaml.safe_load(config.read_text()) or {}
        cfg: SynthCommandConfig = _build(SynthCommandConfig, data, "")
        run_dir = Path(output_dir or cfg.output_dir) / cfg.name
        run_dir.mkdir(parents=True, exist_ok=True)
        results = run_synthetic(cfg.synthetic, run_dir, progress=not quiet)
    except (ConfigError, DataUnavailableError, InvalidParameterError, yaml.YAMLError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report = PrivacyReport(title=f"privlab synthetic-data report: {cfg.name}", config={"synthetic": data})
    report.sections["synthetic"] = synth_section(results, data.get("synthetic", {})).to_dict()
    path = report.save(run_dir / "report.json")
    render_html(path, run_dir / "report.html")
    for r in results:
        u, d = r["utility"]["synthetic"], r["domias"]["outliers"]
        sh = r.get("shadow_mia")
        typer.echo(
            f"{r['generator']:>9} eps {r['epsilon']!s:>5}: TSTR acc {u['accuracy']:.3f}, DOMIAS(outliers) AUC "
            f"{d['auc']:.3f}" + (f", shadow MIA AUC {sh['auc']:.3f}" if sh else "")
        )
    typer.echo(f"report (HTML): {(run_dir / 'report.html').resolve()}")
