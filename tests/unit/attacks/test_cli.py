"""``privlab attack`` end to end on a tiny configuration (flags, --config, errors)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from privlab.cli.main import app
from privlab.data import load_mnist
from privlab.errors import DataUnavailableError


@pytest.fixture(autouse=True, scope="module")
def _needs_mnist():
    try:
        load_mnist("train")
    except DataUnavailableError as exc:
        pytest.skip(str(exc))


def test_attack_cli_with_config(tmp_path):
    cfg = tmp_path / "attack.yaml"
    cfg.write_text(
        "dataset: mnist\nn_examples: 200\nn_population: 100\nn_reference: 2\nepochs: 1\nbootstrap: 5\n"
        "attacks: loss,lira_offline,rmia_offline\n"
    )
    out = tmp_path / "res.json"
    r = CliRunner().invoke(
        app,
        ["attack", "--config", str(cfg), "--hidden", "8", "--output", str(out), "--cache-dir", str(tmp_path / "cache")],
    )
    assert r.exit_code == 0, r.output
    assert "lira_offline" in r.output and "TPR@0.001" in r.output
    doc = json.loads(out.read_text())
    assert doc["config"]["n_reference_models"] == 2 and set(doc["attacks"]) == {"loss", "lira_offline", "rmia_offline"}


def test_attack_cli_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_exemples: 3\n")
    r = CliRunner().invoke(app, ["attack", "--config", str(bad)])
    assert r.exit_code == 2 and "unknown keys" in r.output
    r = CliRunner().invoke(
        app,
        [
            "attack",
            "--dataset",
            "mnist",
            "--n-examples",
            "100",
            "--n-population",
            "10",
            "--n-reference",
            "1",
            "--epochs",
            "1",
            "--attacks",
            "nope",
        ],
    )
    assert r.exit_code == 2 and "The --attacks option must be one of" in r.output  # names the flag


def test_attack_cli_dp_style_training(tmp_path):
    base = ["attack", "--dataset", "mnist", "--n-examples", "200", "--n-population", "100", "--n-reference", "2"]
    base += ["--epochs", "1", "--hidden", "8", "--bootstrap", "5", "--attacks", "loss,rmia_offline"]
    cache = tmp_path / "cache"
    r = CliRunner().invoke(
        app, [*base, "--dp-max-grad-norm", "0.1", "--dp-noise-multiplier", "1.0", "--cache-dir", str(cache)]
    )
    assert r.exit_code == 0, r.output
    (meta,) = cache.glob("ensemble-*/ensemble.json")
    train = json.loads(meta.read_text())["config"]
    assert train["dp_max_grad_norm"] == 0.1 and train["dp_noise_multiplier"] == 1.0
    r = CliRunner().invoke(app, [*base, "--dp-noise-multiplier", "1.0"])  # noise without clipping
    assert r.exit_code == 2 and "The --dp-noise-multiplier option needs clipping" in r.output


def test_attack_cli_null_dp_option_is_a_clear_error(tmp_path):
    cfg = tmp_path / "attack.yaml"
    cfg.write_text("dataset: mnist\nn_examples: 100\nn_population: 10\nn_reference: 1\ndp_max_grad_norm: null\n")
    r = CliRunner().invoke(app, ["attack", "--config", str(cfg)])
    assert r.exit_code == 2 and "The --dp-max-grad-norm option must be" in r.output
