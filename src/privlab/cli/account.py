"""Epsilon of DP-SGD under both accountants, or the noise multiplier for a target epsilon."""

from __future__ import annotations

import json

import typer

from privlab.accounting import ACCOUNTANTS, calibrate_noise, epsilon
from privlab.cli.errors import cli_errors


def account(
    sample_rate: float = typer.Option(..., help="Poisson sampling rate q = batch size / dataset size."),
    steps: int = typer.Option(..., help="Number of DP-SGD steps."),
    delta: float = typer.Option(1e-5, help="Target delta."),
    noise_multiplier: float | None = typer.Option(None, help="Noise multiplier sigma: prints epsilon."),
    target_epsilon: float | None = typer.Option(None, help="Target epsilon: prints the noise multiplier."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Epsilon of DP-SGD under both accountants, or the noise multiplier for a target epsilon."""
    if (noise_multiplier is None) == (target_epsilon is None):
        raise typer.BadParameter("give exactly one of --noise-multiplier or --target-epsilon")
    rows: dict[str, float] = {}
    with cli_errors():
        for acc in ACCOUNTANTS:
            if noise_multiplier is not None:
                rows[acc] = epsilon(noise_multiplier, sample_rate, steps, delta, acc)
            elif target_epsilon is not None:
                rows[acc] = calibrate_noise(target_epsilon, sample_rate, steps, delta, acc)
    what = "epsilon" if noise_multiplier is not None else "noise_multiplier"
    if as_json:
        typer.echo(json.dumps({"quantity": what, "delta": delta, **rows}))
        return
    given = (
        f"noise multiplier {noise_multiplier}" if noise_multiplier is not None else f"target epsilon {target_epsilon}"
    )
    typer.echo(f"DP-SGD, Poisson rate {sample_rate}, {steps} steps, delta {delta}, {given}")
    for acc, value in rows.items():
        label = "PLD (tight)" if acc == "pld" else "RDP"
        typer.echo(f"  {label:<12} {what} = {value:.4f}")
