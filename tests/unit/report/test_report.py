"""privlab.report: JSON schema round trip, tamper evidence, HTML card and figures, in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from privlab.accounting import PrivacyLedger
from privlab.attacks import evaluate_scores
from privlab.audit import AuditResult
from privlab.errors import CorruptArtifactError
from privlab.report import ModelEntry, PrivacyReport, attack_curves, load_report, render_html


def _mia(seed: int, shift: float) -> dict:
    rng = np.random.default_rng(seed)
    member = rng.random(400) < 0.5
    scores = rng.normal(size=400) + shift * member
    m = evaluate_scores(scores, member, n_bootstrap=20, seed=seed)
    return {"schema": "privlab.mia", "version": 1, "attacks": {"loss": {"metrics": m.to_dict(), "scores": []}}}


def _report(violated: bool = False) -> PrivacyReport:
    led = PrivacyLedger(delta=1e-5)
    led.record(1.0, 0.01, 500)
    eps = led.epsilon()
    rep = PrivacyReport(title="unit <report>", config={"seed": 0, "note": "x"})
    rep.models["dp"] = ModelEntry(dp=True, utility={"test_accuracy": 0.91}, claimed={"epsilon": eps, "delta": 1e-5},
                                  ledger=led.to_dict())
    rep.models["plain"] = ModelEntry(dp=False, utility={"test_accuracy": 0.97})
    rep.attacks = {"dp": _mia(0, 0.1), "plain": _mia(1, 2.0)}
    lb = eps * 1.5 if violated else eps * 0.3
    rep.audits = {"dp": [AuditResult("one_run", lb, 0.95, 1e-5, {"m": 1000}, claimed_epsilon=eps).to_dict()]}
    return rep


def test_json_round_trip_and_checksum(tmp_path: Path) -> None:
    path = _report().save(tmp_path / "r.json")
    data = load_report(path)
    assert data["schema_version"] == 2 and len(data["config_hash"]) == 64
    assert data["environment"]["packages"]["torch"]
    data["models"]["dp"]["utility"]["test_accuracy"] = 0.99
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptArtifactError, match="checksum"):
        load_report(path)
    path.write_text("{")
    with pytest.raises(CorruptArtifactError):
        load_report(path)


def test_attack_curves_reads_mia_results() -> None:
    curves = attack_curves(_mia(1, 2.0))
    assert curves["loss"]["auc"] > 0.8 and len(curves["loss"]["fpr"]) == len(curves["loss"]["tpr"]) > 10
    assert curves["loss"]["tpr_at"]


@pytest.mark.parametrize("violated", [False, True])
def test_html_card_verdict(tmp_path: Path, violated: bool) -> None:
    html = render_html(load_report(_report(violated).save(tmp_path / "r.json")))
    assert ("CLAIM VIOLATED" in html) is violated
    assert ("consistent" in html) is not violated
    assert "unit &lt;report&gt;" in html  # titles are escaped
    assert html.count("<svg") == 4  # ROC x2, epsilon, utility


def test_html_renders_in_headless_browser(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium here (Debian package chromium; `make test` installs it as root)")
    out = tmp_path / "report.html"
    render_html(load_report(_report().save(tmp_path / "r.json")), out)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="privacy-card"' in dom.stdout
    for cls in ("roc", "epsilon", "utility"):
        assert f'<figure class="{cls}"><svg' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, "--window-size=1200,1600", f"--screenshot={shot}", out.as_uri()],
                   capture_output=True, timeout=120, check=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one


@pytest.mark.parametrize("noise", ["seeded", "os_csprng"])
def test_card_says_when_the_dp_noise_was_seeded(tmp_path: Path, noise: str) -> None:
    from privlab.report.verify import schema_errors

    rep = _report()
    rep.models["dp"].claimed = {**(rep.models["dp"].claimed or {}), "noise": noise}
    path = rep.save(tmp_path / "r.json")
    assert not list(schema_errors(json.loads(path.read_text())))
    html = render_html(load_report(path))
    assert ("not private against anyone who knows the seed" in html) is (noise == "seeded")
    bad = json.loads(path.read_text())
    bad["models"]["dp"]["claimed"]["noise"] = "dice"
    assert list(schema_errors(bad))
