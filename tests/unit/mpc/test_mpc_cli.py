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


def test_mpc_party_refuses_bad_files_before_the_rendezvous(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each check fires before any network step (no peers are running): exit status 2, flag named."""
    import torch

    torch.save(torch.rand(3, 1, 28, 28), tmp_path / "x3.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "junk.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    base = ["mpc", "party", "--model", "mlp", "--batch", "2", "--port", "1"]
    cases = [
        (["--rank", "1", "--input", str(tmp_path / "x3.pt")], "of shape (2, 1, 28, 28)"),
        (["--rank", "1", "--input", str(tmp_path / "broken.pt")], "is not a readable tensor file"),
        (["--rank", "0", "--weights", str(tmp_path / "junk.pt")], "is not a state_dict of --model 'mlp'"),
        (["--rank", "0", "--weights", str(tmp_path / "missing.pt")], "is not a state_dict"),
        (["--rank", "0", "--input-shape", "1,x"], "--input-shape must be comma-separated"),
    ]
    for extra, what in cases:
        result = CliRunner().invoke(app, [*base, *extra])
        text = " ".join(result.output.replace("\u2502", " ").split())  # unwrap the error box
        assert result.exit_code == 2 and what in text, (extra, result.output)


def _text(result) -> str:  # type: ignore[no-untyped-def]
    return " ".join(result.output.replace("\u2502", " ").split())  # unwrap the error box


def test_mpc_party_refuses_bad_environment_before_the_rendezvous() -> None:
    """Named errors and exit status 2, not KeyError/ValueError tracebacks; no peers are running."""
    base = ["mpc", "party", "--model", "mlp", "--batch", "2"]
    clean = {"RANK": None, "WORLD_SIZE": None, "MASTER_PORT": None, "MASTER_ADDR": None}
    cases = [
        ([], {}, "--rank is not given and the RANK environment variable is not set"),
        ([], {"RANK": "abc"}, "The RANK environment variable (used without --rank) must be an int in the range [0, 2]"),
        (["--rank", "0"], {"WORLD_SIZE": "x"}, "The WORLD_SIZE environment variable must be 3"),
        (["--rank", "0"], {"MASTER_PORT": "x"}, "The MASTER_PORT environment variable (used without --port)"),
        (["--rank", "0"], {"MASTER_PORT": "0"}, "The MASTER_PORT environment variable (used without --port)"),
        (["--rank", "0", "--port", "0"], {}, "--port"),  # used to become 29500 silently
        (["--rank", "3", "--port", "1"], {}, "--rank"),
    ]
    for extra, env, what in cases:
        result = CliRunner().invoke(app, [*base, *extra], env={**clean, **env})
        assert result.exit_code == 2 and what in _text(result), (extra, env, result.output)
        assert not isinstance(result.exception, KeyError | ValueError), (extra, env)


def test_mpc_train_and_run_name_their_bad_options() -> None:
    cases = [
        (["mpc", "train", "--transport", "bogus"], "--transport must be one of ['gloo', 'local']. Got 'bogus'"),
        (["mpc", "run", "--transport", "bogus"], "--transport must be one of ['gloo', 'local']. Got 'bogus'"),
        (["mpc", "train", "--lr", "0"], "error: The --lr option must be a float in the range (0.0, inf). Got 0.0"),
        (["mpc", "train", "--timeout", "0"], "error: The --timeout option must be a float in the range (0.0, "),
    ]
    for args, what in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and what in _text(result), (args, result.output)
