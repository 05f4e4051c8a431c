"""Entry point of the ``privlab`` command.

Each pillar contributes one module under ``privlab.cli`` that defines either a Typer app (a group,
mounted with ``add_typer``) or a single command function (registered with ``command``). Mounting is
explicit so that a broken subcommand fails loudly instead of disappearing from ``--help``.
"""

from __future__ import annotations

import typer

from privlab import __version__
from privlab.cli import account as account
from privlab.cli import attack as attack_cli
from privlab.cli import data as data
from privlab.cli import fl as fl_cli
from privlab.cli import llm as llm_cli
from privlab.cli import mpc as mpc_cli
from privlab.cli import report as report_cli
from privlab.cli import run as run_cli
from privlab.cli import synth as synth_cli
from privlab.cli import train as train_cli
from privlab.cli import unlearn as unlearn_cli

app = typer.Typer(
    name="privlab",
    help="privlab: privacy-preserving machine learning you can measure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("account", help=account.__doc__)(account.account)
app.command("train", help="Train a model with DP-SGD and save it with its privacy ledger.")(train_cli.train)
app.add_typer(data.app, name="data", help=data.__doc__)
app.command("run", help="Run a configured pipeline: train -> attack -> audit -> report.")(run_cli.run_cmd)
app.command("demo", help="The bundled MNIST demo: train, attack, audit, report.")(run_cli.demo)
app.command("synth", help="DP synthetic data: generators x epsilons, attacks, report.")(synth_cli.synth_cmd)
app.add_typer(
    mpc_cli.app, name="mpc", help="Secure multi-party computation: private inference and training on secret shares."
)
app.add_typer(fl_cli.app, name="fl", help="Federated learning on Flower: user-level DP, SecAgg+, inversion attacks.")
app.add_typer(
    llm_cli.app, name="llm", help="Language-model privacy: canaries, exposure, extraction, PII, MIA, DP fine-tuning."
)
app.add_typer(report_cli.app, name="report", help=report_cli.__doc__)
app.command("unlearn", help="Unlearning methods measured against retraining.")(unlearn_cli.unlearn_cmd)
app.command("attack", help="Membership-inference attacks (LOSS, Attack-R, LiRA, RMIA) on a model and its data.")(
    attack_cli.attack
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"privlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """privlab: privacy-preserving machine learning you can measure."""


def main() -> None:
    """Run the CLI (console-script entry point)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
