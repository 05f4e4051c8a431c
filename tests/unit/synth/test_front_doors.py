"""`synthetic:` in run configs, `privlab synth CONFIG.yaml`, the report section and its cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from privlab.cli.main import app
from privlab.errors import ConfigError
from privlab.pipeline.config import config_from_dict
from privlab.report.sections import Section


def test_run_config_synthetic_section_is_strict() -> None:
    cfg = config_from_dict({"synthetic": {"generators": ["aim", "copula"], "epsilons": [1.0, float("inf")]}})
    assert cfg.synthetic is not None and cfg.synthetic.generators == ("aim", "copula")
    assert config_from_dict({}).synthetic is None
    with pytest.raises(ConfigError, match=r"unknown key 'synthetic\.epsilon'"):
        config_from_dict({"synthetic": {"epsilon": 1.0}})
    with pytest.raises(ConfigError, match=r"synthetic\.epsilons: must be a float"):
        config_from_dict({"synthetic": {"epsilons": [0.0]}})
    with pytest.raises(ConfigError, match=r"synthetic\.generators: must be one of"):
        config_from_dict({"synthetic": {"generators": ["gan"]}})


@pytest.mark.slow
def test_synth_command_writes_report_and_reuses_stages(tmp_path: Path) -> None:
    cfg = tmp_path / "synth.yaml"
    cfg.write_text(
        f"name: t\noutput_dir: {tmp_path}\nsynthetic:\n  generators: [bayesnet, copula]\n  epsilons: [1.0]\n"
        "  train_size: 200\n  test_size: 300\n  shadow_models: 4\n"
    )
    runner = CliRunner()
    res = runner.invoke(app, ["synth", str(cfg), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "bayesnet eps   inf" in res.output  # non-private generators run once, at epsilon = inf
    report = json.loads((tmp_path / "t" / "report.json").read_text())
    sec = Section.from_dict(report["sections"]["synthetic"])
    assert [t.title for t in sec.tables] == ["Privacy budget", "Fidelity and utility", "Leakage"]
    assert sec.figures[0].svg.startswith("<svg") and len(sec.data["releases"]) == 2
    assert "Synthetic data" in (tmp_path / "t" / "report.html").read_text()
    stages = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "t").glob("synth-*"))
    assert stages == ["synth-bayesnet-epsinf", "synth-copula-epsinf"]
    again = runner.invoke(app, ["synth", str(cfg), "--quiet"])  # cached: same numbers
    assert again.exit_code == 0 and again.output == res.output


def test_synth_command_names_the_bad_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("synthetic:\n  epsilons: [-1]\n")
    res = CliRunner().invoke(app, ["synth", str(cfg)])
    assert res.exit_code == 2 and "synthetic.epsilons" in res.output
