"""Re-runs of the pipeline: the same report numbers at another thread count, resume messages after
Ctrl-C. (The pipeline's report against its schema and in headless Chromium: test_pipeline.py.)"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from privlab.data import availability
from privlab.pipeline import config_from_dict, run
from privlab.report import load_report
from privlab.testing.configs import tiny_run_config

CONFIG = tiny_run_config("rep")


# Smaller than CONFIG (no audit, fewer examples): the test runs it several times.
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


def _numbers(report: dict) -> dict:
    """Every number the report shows about models, attacks and audits."""
    return {
        "models": {k: v["utility"] for k, v in report["models"].items()},
        "attacks": {
            m: {a: e["metrics"] for a, e in r["attacks"].items()} for m, r in report["attacks"].items()
        },
        "audits": report["audits"],
    }


def test_rerun_reproduces_every_number_and_ctrl_c_resumes_naming_the_stages(tmp_path: Path, monkeypatch) -> None:
    """One test (each pipeline run costs seconds): a fresh re-run started at another thread count gives
    the same report numbers; Ctrl-C says how to resume; the re-run names reused and recomputed stages."""
    import importlib

    _mnist()
    res, log = _run(tmp_path / "a", caller_threads=2, config=SMALL)
    again, _ = _run(tmp_path / "b", caller_threads=1, config=SMALL)
    first, second = load_report(res.report_json), load_report(again.report_json)
    assert first["environment"]["torch_threads"] == second["environment"]["torch_threads"] == 1
    assert _numbers(first) == _numbers(second)  # exact: not approximately
    assert "stages reused: none; recomputed: target-plain, target-dp, attack-plain, attack-dp" in log

    out = tmp_path / "a"
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
        run(config_from_dict(SMALL | {"output_dir": str(out)}), progress=False)
    log = buf.getvalue()
    assert "stage target-plain: reused (cached)" in log
    assert "stage attack-plain: computing (an earlier run was interrupted during it)" in log
    assert "interrupted; re-run to resume" in log
    monkeypatch.undo()
    resumed, log = _run(out, caller_threads=1, config=SMALL)
    assert "stage attack-dp: computing (an earlier run was interrupted during it)" in log
    assert "stages reused: target-plain, target-dp, attack-plain; recomputed: attack-dp" in log
    assert _numbers(load_report(resumed.report_json)) == _numbers(first)  # resumed: still the same numbers
