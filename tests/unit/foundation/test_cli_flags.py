"""CLI errors name the user's flag (``--dataset``, ``--delta``), never the Python parameter behind it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from privlab.cli.errors import flag_message
from privlab.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "flag", "hidden"),
    [
        (["train", "--dataset", "cifar10", "--out", "OUT"], "--dataset", "'name' parameter of load_dataset"),
        (["account", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "5", "--delta", "2"], "--delta",
         "'delta' parameter"),
        (["account", "--target-epsilon", "-1", "--sample-rate", "0.1", "--steps", "5"], "--target-epsilon",
         "'target_epsilon' parameter"),
        (["demo", "--threads", "0", "--output-dir", "OUT"], "--threads", "'threads' parameter"),
        (["attack", "--dataset", "cifar10"], "--dataset", "'name' parameter of load_dataset"),
    ],
)
def test_errors_name_the_flag(tmp_path: Path, args: list[str], flag: str, hidden: str) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert f"The {flag} option must be" in res.output and hidden not in res.output


def test_unmapped_parameters_are_left_alone() -> None:
    msg = "The 'sample_rate' parameter of PoissonSampler must be a float in the range (0, 1]. Got 2.0 instead."
    assert flag_message(msg, {"delta": "--delta"}) == msg
    assert flag_message(msg, {"sample_rate": "--sample-rate"}).startswith("The --sample-rate option must be")
    two_words = "The 'attacks' parameter of privlab attack must be one of 'loss'. Got 'x' instead."
    fixed = flag_message(two_words, {"attacks": "--attacks"})
    assert fixed == "The --attacks option must be one of 'loss'. Got 'x' instead."
