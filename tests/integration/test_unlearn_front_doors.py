"""``privlab unlearn CONFIG.yaml`` and the ``unlearning:`` section of ``privlab run``: the report gets
the unlearning section (table with intervals, figures), stages are cached, bad keys are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from privlab.cli.main import app
from privlab.errors import ConfigError
from privlab.pipeline import config_from_dict, run
from privlab.report import load_report

UNLEARNING = {
    "methods": ["retrain", "scrub", "certified"],
    "forget_fraction": 0.05,
    "scaling": [0.05],
    "requests": 2,
    "shadows": 6,
    "hidden": [16],
    "settings": {"train": {"epochs": 3, "batch_size": 32, "lr": 0.05}, "epochs": 1, "shards": 2, "slices": 2},
    "per_method": {"scrub": {"lr": 0.02}},
}
CFG = {"name": "tiny-unlearn", "seed": 0, "data": {"dataset": "adult", "population": 400, "test_size": 200}}


def test_privlab_unlearn_cli_writes_the_section_and_caches(tmp_path: Path) -> None:
    path = tmp_path / "u.yaml"
    path.write_text(yaml.safe_dump(CFG | {"output_dir": str(tmp_path / "runs"), "unlearning": UNLEARNING}))
    res = CliRunner().invoke(app, ["unlearn", str(path), "--quiet"])
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs" / "tiny-unlearn"
    rep = load_report(run_dir / "report.json")
    sec = rep["sections"]["unlearning"]
    table = sec["tables"][0]
    assert [r[0] for r in table["rows"]] == ["original (no unlearning)", "retrain", "scrub", "certified"]
    ci = table["rows"][1][table["columns"].index("U-LiRA CI")]
    assert isinstance(ci, list) and len(ci) == 2 and ci[0] <= ci[1]
    assert {f["title"] for f in sec["figures"]} >= {"U-LiRA ROC", "Drift over removal requests"}
    assert "Machine unlearning" in (run_dir / "report.html").read_text()
    marks = {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("unlearn-*/done.json")}
    assert len(marks) == 4
    again = CliRunner().invoke(app, ["unlearn", str(path), "--quiet"])
    assert again.exit_code == 0
    assert {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("unlearn-*/done.json")} == marks
    json.dumps(sec["data"])


def test_bad_unlearning_config_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unlearning\.methods: must be one of"):
        config_from_dict(CFG | {"unlearning": {"methods": ["forget_everything"]}})
    with pytest.raises(ConfigError, match=r"unknown key 'unlearning\.settings\.bogus'"):
        config_from_dict(CFG | {"unlearning": {"settings": {"bogus": 1}}})
    with pytest.raises(ConfigError, match=r"unlearning\.settings\.train\.epochs"):
        config_from_dict(CFG | {"unlearning": {"settings": {"train": {"epochs": -1}}}})
    path = tmp_path / "none.yaml"
    path.write_text(yaml.safe_dump(CFG))
    res = CliRunner().invoke(app, ["unlearn", str(path)])
    assert res.exit_code == 2 and "unlearning:" in res.output


def test_privlab_run_with_an_unlearning_section(tmp_path: Path) -> None:
    cfg = config_from_dict(
        CFG
        | {
            "output_dir": str(tmp_path),
            "targets": [{"name": "plain", "hidden": [16], "train": {"epochs": 1, "batch_size": 32}}],
            "attack": {"reference_models": 2, "attacks": ["loss"], "train": {"epochs": 1, "batch_size": 32}},
            "audit": {"enabled": False},
            "unlearning": UNLEARNING | {"methods": ["finetune"], "shadows": 0, "scaling": [], "requests": 0},
        }
    )
    res = run(cfg, progress=False, quiet=True)
    rep = load_report(res.report_json)
    assert "plain" in rep["models"] and rep["sections"]["unlearning"]["tables"][0]["rows"][0][0] == "finetune"
