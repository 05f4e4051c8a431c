"""The foundation subcommands of the ``privlab`` CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from privlab.accounting import calibrate_noise, epsilon
from privlab.cli.main import app

runner = CliRunner()


def test_help_lists_subcommands() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for sub in ("account", "data"):
        assert sub in res.output


def test_account_prints_both_accountants() -> None:
    args = ["account", "--noise-multiplier", "1.1", "--sample-rate", "0.004266", "--steps", "14040",
            "--delta", "1e-5", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pld"] == epsilon(1.1, 0.004266, 14040, 1e-5, "pld")
    assert out["rdp"] == epsilon(1.1, 0.004266, 14040, 1e-5, "rdp")


def test_account_target_epsilon_prints_noise() -> None:
    res = runner.invoke(app, ["account", "--target-epsilon", "3", "--sample-rate", "0.01", "--steps", "500",
                              "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["quantity"] == "noise_multiplier"
    assert out["rdp"] == calibrate_noise(3.0, 0.01, 500, 1e-5, "rdp")


def test_account_bad_input_is_a_clear_error() -> None:
    res = runner.invoke(app, ["account", "--noise-multiplier", "1", "--sample-rate", "2", "--steps", "5"])
    assert res.exit_code == 2
    assert "--sample-rate option" in res.output and "'sample_rate'" not in res.output  # names the flag
    res = runner.invoke(app, ["account", "--sample-rate", "0.1", "--steps", "5"])
    assert res.exit_code != 0


def test_data_list() -> None:
    res = runner.invoke(app, ["data", "list"])
    assert res.exit_code == 0
    assert "mnist" in res.output and "source:" in res.output
