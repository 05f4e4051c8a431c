"""The llm stage of ``privlab run`` (config, cache, report section, HTML) and the ``privlab llm`` CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from privlab.errors import ConfigError
from privlab.llm.config import DPSpec, LLMRunConfig
from privlab.llm.pipeline import llm_stage
from privlab.pipeline.config import config_from_dict
from privlab.report import PrivacyReport, render_html
from privlab.report.sections import Section

from .toy import CORPUS, TINY


def test_run_config_llm_section_is_strict():
    cfg = config_from_dict({"llm": {"experiment": {"repetitions": [1, 16], "train": {"steps": 5}}, "dp": None}})
    assert cfg.llm is not None and cfg.llm.dp is None and cfg.llm.experiment.repetitions == (1, 16)
    assert config_from_dict({}).llm is None
    with pytest.raises(ConfigError, match=r"llm\.experiment\.train\.stepz"):
        config_from_dict({"llm": {"experiment": {"train": {"stepz": 5}}}})
    with pytest.raises(ConfigError, match=r"llm\.dp\.clipping"):
        config_from_dict({"llm": {"dp": {"clipping": "ghostly"}}})
    with pytest.raises(ConfigError, match=r"llm\.experiment\.model"):
        config_from_dict({"llm": {"experiment": {"model": "gpt5"}}})
    assert config_from_dict({"llm": {"experiment": {"reference": "public"}}}).llm.experiment.reference == "public"
    with pytest.raises(ConfigError, match=r"llm\.experiment"):
        config_from_dict({"llm": {"experiment": {"reference": "base"}}})  # base needs a pretrained model


def test_llm_stage_caches_and_renders(tmp_path, monkeypatch):
    import privlab.llm.experiment as ex

    monkeypatch.setattr(ex, "load_shakespeare_text", lambda: CORPUS)
    cfg = LLMRunConfig(TINY, DPSpec(target_epsilon=8.0, accountant="rdp"))
    sec = llm_stage(cfg, tmp_path, seed=0)
    Section.from_dict(sec)
    assert set(sec["data"]) == {"non-private", "DP eps=8"}
    assert any(t["title"].startswith("Canary exposure") for t in sec["tables"])
    assert len(sec["figures"]) == 3 and len(sec["card"]) == 2
    stages = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setattr(ex, "run_canary_experiment", lambda *a, **k: pytest.fail("should be cached"))
    assert llm_stage(cfg, tmp_path, seed=0)["data"] == sec["data"]
    assert sorted(p.name for p in tmp_path.iterdir()) == stages
    report = PrivacyReport(title="t", config={})
    report.sections["llm"] = sec
    path = report.save(tmp_path / "report.json")
    html = render_html(path, tmp_path / "report.html")
    text = (tmp_path / "report.html").read_text()
    assert "Canary exposure" in text and "<svg" in text
    _ = html


def test_cli_canaries_non_private(tmp_path, monkeypatch):
    import privlab.llm.experiment as ex
    from privlab.cli.main import app

    monkeypatch.setattr(ex, "load_shakespeare_text", lambda: CORPUS)
    args = ["llm", "canaries", "--steps", "3", "--corpus-chars", "4000", "--repetitions", "1,4", "--epsilon", "0"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "Canary exposure" in res.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data) == ["non-private"]
    bad = CliRunner().invoke(app, ["llm", "canaries", "--steps", "0", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "--steps" in bad.output
