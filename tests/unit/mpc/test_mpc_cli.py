"""`privlab mpc run` end to end (in-process transport, small batch)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from privlab.cli.main import app


def test_mpc_run_prints_costs_and_agreement() -> None:
    result = CliRunner().invoke(app, ["mpc", "run", "--model", "mlp", "--batch", "2",
                                      "--transport", "local", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["argmax_agreement"] == 1.0
    assert row["rounds"] == 17 and row["bytes"] > 0 and row["dealer_bytes"] > 0


def test_mpc_run_rejects_unknown_model() -> None:
    result = CliRunner().invoke(app, ["mpc", "run", "--model", "nope", "--transport", "local"])
    assert result.exit_code != 0


def test_mpc_run_takes_the_comparison_tree() -> None:
    args = ["mpc", "run", "--model", "mlp", "--batch", "2", "--transport", "local", "--json"]
    default = json.loads(CliRunner().invoke(app, args).output.strip().splitlines()[-1])
    result = CliRunner().invoke(app, [*args, "--cmp-tree", "3,4"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["cmp_tree"] == [3, 4] and row["argmax_agreement"] == 1.0
    assert row["rounds"] == default["rounds"] - 2  # two ReLU layers, each one round fewer
    for bad, what in (("3,x", "--cmp-tree must be comma-separated"), ("2,9", "'cmp_tree' parameter of MPCConfig")):
        result = CliRunner().invoke(app, [*args, "--cmp-tree", bad])
        assert result.exit_code != 0 and what in " ".join(result.output.split())


def test_mpc_train_reaches_good_accuracy() -> None:
    result = CliRunner().invoke(app, ["mpc", "train", "--n", "120", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["accuracy"] > 0.85 and row["rounds"] > 0
