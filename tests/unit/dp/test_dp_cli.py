"""``privlab train`` end to end on a small slice of data (the loader is patched to stay fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import privlab.cli.train as train_cli
from privlab.accounting import PrivacyLedger
from privlab.cli.main import app
from privlab.data import ArrayDataset
from privlab.dp.checkpoint import load_checkpoint
from privlab.models import MLP, SmallCNN


def test_train_saves_model_ledger_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    small = ArrayDataset(torch.rand(200, 1, 28, 28, generator=g), torch.randint(0, 10, (200,), generator=g))
    monkeypatch.setattr(train_cli, "load_dataset", lambda name, split="train", data_dir=None: small)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--dataset", "mnist", "--model", "cnn", "--target-epsilon", "3",
                                      "--delta", "1e-5", "--epochs", "2", "--batch-size", "50", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output  # tqdm's bar (stderr) and the JSON summary (stdout) share the captured output
    summary = json.loads(text[text.index('{"out"') :].splitlines()[0])
    assert 2.9 < summary["epsilon"] <= 3.0
    assert {p.name for p in out.iterdir()} == {"model.safetensors", "ledger.json", "config.json"}
    ck = load_checkpoint(out, SmallCNN())
    assert ck.ledger.steps == 8 and ck.config["target_epsilon"] == 3.0
    assert PrivacyLedger.from_json(out / "ledger.json").epsilon() == pytest.approx(summary["epsilon"])


def test_train_reports_bad_parameters(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--clipping", "fast", "--noise-multiplier", "1", "--out",
                                      str(tmp_path)])
    assert result.exit_code != 0


def _torchrun(args: list[str], nproc: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    venv = Path(sys.executable).parent
    cmd = [str(venv / "torchrun"), "--nproc-per-node", str(nproc), str(venv / "privlab"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.multiprocess
def test_train_under_torchrun_is_data_parallel_with_the_one_process_guarantee(tmp_path: Path) -> None:
    common = ["train", "--dataset", "adult", "--model", "mlp", "--noise-multiplier", "1", "--epochs", "1",
              "--batch-size", "1024", "--lr", "0.5"]
    two = _torchrun([*common, "--out", str(tmp_path / "two")], 2, tmp_path)
    assert two.returncode == 0, two.stderr[-2000:]
    summary = json.loads(two.stdout[two.stdout.index('{"out"') :].splitlines()[0])  # rank 0 alone prints it
    assert summary["ranks"] == 2 and two.stdout.count('{"out"') == 1
    one = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    alone = json.loads(one.output[one.output.index('{"out"') :].splitlines()[0])
    assert summary["epsilon"] == pytest.approx(alone["epsilon"], rel=1e-12) and alone["ranks"] == 1
    ck = load_checkpoint(tmp_path / "two", MLP(in_features=105, num_classes=2))
    assert ck.ledger.steps == load_checkpoint(tmp_path / "one", MLP(in_features=105, num_classes=2)).ledger.steps
    assert ck.config["ranks"] == 2
    bad = _torchrun([*common[:-4], "--batch-size", "1023", "--out", str(tmp_path / "bad")], 2, tmp_path)
    assert bad.returncode != 0 and "--batch-size 1023 must be a multiple of the 2 ranks" in bad.stderr
