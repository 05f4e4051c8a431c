"""Epsilon of DP-SGD under both accountants, or the noise multiplier for a target epsilon."""

from __future__ import annotations

import json

import typer

from privlab.accounting import ACCOUNTANTS, epsilon, resolve_noise_multiplier
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
    rows: dict[str, float] = {}
    with cli_errors():
        for acc in ACCOUNTANTS:
            sigma = resolve_noise_multiplier(
                noise_multiplier,
                target_epsilon,
                sample_rate=sample_rate,
                steps=steps,
                delta=delta,
                owner="privlab account",
                accountant=acc,
                names=("--noise-multiplier", "--target-epsilon"),
            )
            rows[acc] = epsilon(sigma, sample_rate, steps, delta, acc) if noise_multiplier is not None else sigma
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
