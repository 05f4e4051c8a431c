"""The pipeline's own report as a reader gets it: valid against report.schema.json, the same numbers
on a re-run at another thread count, resume messages after Ctrl-C, and the page in headless Chromium."""

from __future__ import annotations

import contextlib
import html as htmllib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from privlab.cli.main import app
from privlab.data import availability
from privlab.pipeline import config_from_dict, run
from privlab.report import attack_curves, load_report, strongest_attack
from privlab.report.tables import fmt

CONFIG = {
    "name": "rep",
    "seed": 0,
    "data": {"dataset": "mnist", "population": 300, "test_size": 300},
    "targets": [
        {"name": "plain", "train": {"epochs": 3, "batch_size": 32, "lr": 0.05}},
        {
            "name": "dp",
            "train": {"epochs": 1, "batch_size": 50, "lr": 1.0, "momentum": 0.0},
            "dp": {"target_epsilon": 8.0},
        },
    ],
    "attack": {
        "reference_models": 2,
        "attacks": ["loss", "lira_offline", "rmia_offline"],
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.05},
    },
    "audit": {"canaries": 40},
}


# Smaller (no audit, fewer examples): for the re-run and resume tests, which need no shared fixture
# (under pytest-xdist a module fixture is built once per worker that runs one of its tests).
SMALL = CONFIG | {
    "name": "small",
    "data": {"dataset": "mnist", "population": 200, "test_size": 200},
    "attack": CONFIG["attack"] | {"attacks": ["loss", "lira_offline"]},
    "audit": {"enabled": False},
}


def _mnist() -> None:
    if availability().get("mnist") is not None:
        pytest.skip("MNIST not installed")


def _run(out: Path, caller_threads: int, config: dict = CONFIG, **kw):
    """Run ``config`` with torch set to ``caller_threads`` by the caller (as OMP_NUM_THREADS would)."""
    before = torch.get_num_threads()
    torch.set_num_threads(caller_threads)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            res = run(config_from_dict(config | {"output_dir": str(out)}), progress=False, **kw)
    finally:
        torch.set_num_threads(before)
    return res, log.getvalue()


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory):
    _mnist()
    return _run(tmp_path_factory.mktemp("runs"), caller_threads=2)


def _numbers(report: dict) -> dict:
    """Every number the report shows about models, attacks and audits."""
    return {
        "models": {k: v["utility"] for k, v in report["models"].items()},
        "attacks": {
            m: {a: e["metrics"] for a, e in r["attacks"].items()} for m, r in report["attacks"].items()
        },
        "audits": report["audits"],
    }


def test_fresh_rerun_at_another_thread_count_reproduces_every_number(tmp_path: Path) -> None:
    _mnist()
    res, log = _run(tmp_path / "a", caller_threads=2, config=SMALL)
    again, _ = _run(tmp_path / "b", caller_threads=1, config=SMALL)
    first, second = load_report(res.report_json), load_report(again.report_json)
    assert first["environment"]["torch_threads"] == second["environment"]["torch_threads"] == 1
    assert _numbers(first) == _numbers(second)  # exact: not approximately
    assert "stages reused: none; recomputed: target-plain, target-dp, attack-plain, attack-dp" in log


def test_ctrl_c_says_how_to_resume_and_the_rerun_names_reused_and_recomputed(tmp_path: Path, monkeypatch) -> None:
    import importlib

    _mnist()
    res, _ = _run(tmp_path, caller_threads=1, config=SMALL)
    next(res.run_dir.glob("attack-plain-*/done.json")).unlink()  # as if killed during the attack on plain
    run_mod = importlib.import_module("privlab.pipeline.run")
    real = run_mod.attack_stage

    def ctrl_c_on_dp(cfg, target, *a, **k):  # Ctrl-C once the attack on dp starts
        if target.name == "dp":
            next(res.run_dir.glob("attack-dp-*/done.json")).unlink()  # it had begun: no done marker
            raise KeyboardInterrupt
        return real(cfg, target, *a, **k)

    monkeypatch.setattr(run_mod, "attack_stage", ctrl_c_on_dp)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf), pytest.raises(KeyboardInterrupt):
        run(config_from_dict(SMALL | {"output_dir": str(tmp_path)}), progress=False)
    log = buf.getvalue()
    assert "stage target-plain: reused (cached)" in log
    assert "stage attack-plain: computing (an earlier run was interrupted during it)" in log
    assert "interrupted; re-run to resume" in log
    monkeypatch.undo()
    _, log = _run(tmp_path, caller_threads=1, config=SMALL)
    assert "stage attack-dp: computing (an earlier run was interrupted during it)" in log
    assert "stages reused: target-plain, target-dp, attack-plain; recomputed: attack-dp" in log


def _chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium here (Debian package chromium; `make test` installs it as root)")
    return browser


def test_pipeline_report_matches_its_schema_and_reads_well_in_headless_chromium(pipeline_run, tmp_path: Path) -> None:
    """One test on the full report (DP target, audits), so pytest-xdist builds it once."""
    res, _ = pipeline_run
    pytest.importorskip("jsonschema")
    from privlab.report.verify import schema_errors

    assert schema_errors(json.loads(res.report_json.read_text())) == []
    out = CliRunner().invoke(app, ["report", "verify", str(res.report_json)])
    assert out.exit_code == 0 and out.output.startswith("OK "), out.output
    browser = _chromium()
    rep = load_report(res.report_json)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = res.report_html.resolve().as_uri()
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    card = page[page.index('id="privacy-card"') : page.index("<h2>Figures")]
    for model, mia in rep["attacks"].items():
        best = strongest_attack(attack_curves(mia))
        assert best is not None
        row = re.search(rf'<tr data-model="{model}">(.*?)</tr>', card, re.S)
        assert row, f"no card row for {model}"
        text = row.group(1)
        assert f"<b>{best.name}</b>: TPR {fmt(best.tpr)}" in text  # the card's value is the report's
        assert re.search(r'<span class="ci">\[[-\d.e]+, [-\d.e]+\]</span>', text)  # with its interval
    claimed = rep["models"]["dp"]["claimed"]["epsilon"]
    assert f"<td>{fmt(claimed)} (δ=" in card and "ε ≥ " in card
    # Tables carry intervals; every JSON block is whole (parses), none is cut.
    assert page.count('class="ci"') >= 3 * 2 * 4
    blocks = re.findall(r"<pre>(.*?)</pre>", page, re.S)
    json_blocks = [htmllib.unescape(b) for b in blocks if b.lstrip().startswith("{")]
    assert len(json_blocks) >= 3
    for b in json_blocks:
        json.loads(b)
    assert "<details>" in page and "<summary>" in page
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, "--window-size=1200,2400", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a rendered page, not a blank one
