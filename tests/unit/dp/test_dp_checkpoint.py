"""Checkpoints round-trip weights and the ledger, and refuse tampered files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from privlab.accounting import PrivacyLedger
from privlab.dp.checkpoint import load_checkpoint, save_checkpoint
from privlab.errors import CorruptArtifactError


def ledger() -> PrivacyLedger:
    led = PrivacyLedger(1e-5)
    led.record(1.1, 0.01, steps=100)
    return led


def test_round_trip(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path, model, ledger(), {"lr": 0.1})
    other = nn.Linear(3, 2)
    ck = load_checkpoint(tmp_path, other)
    torch.testing.assert_close(other.weight, model.weight)
    assert ck.ledger.steps == 100 and ck.config == {"lr": 0.1}
    assert ck.ledger.epsilon() == pytest.approx(ledger().epsilon())


def test_tampered_weights_or_ledger_are_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, nn.Linear(3, 2), ledger())
    data = json.loads((tmp_path / "ledger.json").read_text())
    data["entries"][0]["noise_multiplier"] = 5.0
    (tmp_path / "ledger.json").write_text(json.dumps(data))
    with pytest.raises(CorruptArtifactError):
        load_checkpoint(tmp_path, nn.Linear(3, 2))
    save_checkpoint(tmp_path, nn.Linear(3, 2), ledger())
    save_checkpoint(tmp_path / "other", nn.Linear(3, 2), ledger())
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(CorruptArtifactError, match="checksum"):
        load_checkpoint(tmp_path, nn.Linear(3, 2))
