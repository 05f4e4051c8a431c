"""``privlab run CONFIG.yaml`` and ``privlab demo``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer

from privlab.cli.errors import command_flags, flag_message
from privlab.errors import ConfigError, DataUnavailableError, InvalidParameterError
from privlab.pipeline import load_config, run

_THREADS_HELP = "torch intra-op threads (fixed so that re-runs reproduce the numbers; 1 by default)."


def _execute(config: Path, output_dir: Path | None, quiet: bool, threads: int = 1) -> None:
    try:
        cfg = load_config(config)
        if output_dir is not None:
            from dataclasses import replace

            cfg = replace(cfg, output_dir=str(output_dir))
        res = run(cfg, progress=not quiet, quiet=quiet, threads=threads)
    except (ConfigError, DataUnavailableError, InvalidParameterError) as exc:
        typer.echo(f"error: {flag_message(str(exc), command_flags())}", err=True)
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:  # run() has said so unless quiet; no traceback for a Ctrl-C
        if quiet:
            typer.echo("interrupted; re-run to resume", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"report (HTML): {res.report_html.resolve()}")
    typer.echo(f"report (JSON): {res.report_json.resolve()}")


def run_cmd(
    config: Path = typer.Argument(..., help="YAML run configuration (see privlab/configs/demo.yaml)."),
    output_dir: Path | None = typer.Option(None, help="Override the config's output_dir."),
    quiet: bool = typer.Option(False, help="No progress bars or stage logs."),
    threads: int = typer.Option(1, help=_THREADS_HELP),
) -> None:
    """Run a configured pipeline: train -> attack -> audit -> report (cached and resumable)."""
    _execute(config, output_dir, quiet, threads)


def demo_config_path() -> Path:
    """The bundled demo configuration."""
    return Path(str(resources.files("privlab") / "configs" / "demo.yaml"))


def demo(
    output_dir: Path | None = typer.Option(None, help="Where to write the run (default: ./privlab-runs)."),
    quiet: bool = typer.Option(False, help="No progress bars or stage logs."),
    threads: int = typer.Option(1, help=_THREADS_HELP),
) -> None:
    """The bundled MNIST demo: DP and non-DP targets, all attacks, an audit, the HTML report."""
    _execute(demo_config_path(), output_dir, quiet, threads)
