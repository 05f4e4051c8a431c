"""``privlab unlearn CONFIG.yaml``: only the unlearning stage of a run config (its ``data:`` and
``unlearning:`` sections), cached like ``privlab run``, written into report.json / report.html."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import typer

from privlab.errors import ConfigError, DataUnavailableError, InvalidParameterError
from privlab.pipeline import load_config
from privlab.pipeline.stages import load_population
from privlab.report import PrivacyReport, render_html
from privlab.unlearn.run import run_unlearning


def unlearn_cmd(
    config: Path = typer.Argument(..., help="YAML run configuration with an 'unlearning:' section."),
    output_dir: Path | None = typer.Option(None, help="Override the config's output_dir."),
    quiet: bool = typer.Option(False, help="No progress bars or stage logs."),
) -> None:
    """Evaluate unlearning methods against retraining and write the report section (cached, resumable)."""
    start = time.perf_counter()
    try:
        cfg = load_config(config)
        if output_dir is not None:
            cfg = replace(cfg, output_dir=str(output_dir))
        if cfg.unlearning is None:
            raise ConfigError(f"{config}: privlab unlearn needs an 'unlearning:' section (see docs/unlearning.md).")
        run_dir = Path(cfg.output_dir) / cfg.name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
        pop = load_population(cfg)
        data_key = {"data": asdict(cfg.data), "n_ref": cfg.attack.reference_models}
        section = run_unlearning(
            cfg.unlearning, pop.members, pop.test, run_dir, seed=cfg.seed, data_key=data_key, progress=not quiet
        )
    except (ConfigError, DataUnavailableError, InvalidParameterError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    report = PrivacyReport(title=f"privlab unlearning report: {cfg.name}", config=cfg.to_dict())
    report.sections["unlearning"] = section
    report_json = report.save(run_dir / "report.json")
    render_html(report_json, run_dir / "report.html")
    table = section["tables"][0]
    show = [
        "method",
        "forget acc.",
        "PrivLeak",
        "U-LiRA TPR@1%FPR",
        "test acc.",
        "time / retrain",
        "fraction retrained",
    ]
    cols = [table["columns"].index(c) for c in show]
    typer.echo(" | ".join(show))
    for row in table["rows"]:
        typer.echo(" | ".join(f"{row[i]:.3f}" if isinstance(row[i], float) else str(row[i]) for i in cols))
    typer.echo(f"report (HTML): {(run_dir / 'report.html').resolve()}")
    typer.echo(f"report (JSON): {report_json.resolve()}")
    typer.echo(f"({time.perf_counter() - start:.0f} s)")
