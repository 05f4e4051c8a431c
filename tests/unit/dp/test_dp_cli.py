"""``privlab train`` end to end on a small slice of data (the loader is patched to stay fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import privlab.cli.train as train_cli
from privlab.accounting import PrivacyLedger
from privlab.cli.main import app
from privlab.data import ArrayDataset
from privlab.dp.checkpoint import load_checkpoint
from privlab.models import SmallCNN


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
