"""The MNIST accuracy target at epsilon 3 (runs benchmarks/dp_accuracy/run.py; tens of minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_mnist_smallcnn_reaches_97_percent_at_epsilon_3(tmp_path: Path) -> None:
    out = tmp_path / "acc.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "dp_accuracy" / "run.py"), "--epochs", "30",
           "--batch-size", "2048", "--lr", "4", "--momentum", "0.5", "--lr-schedule", "cosine", "--out", str(out)]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    final = json.loads(out.read_text())["final"]
    assert final["epsilon"] <= 3.0 + 1e-9
    assert final["test_accuracy"] >= 0.97
