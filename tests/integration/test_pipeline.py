"""The pipeline end to end on a tiny MNIST config: report produced and verifiable, stages cached,
a changed config re-runs only what it affects, a killed stage is redone, bad configs are refused."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from privlab.data import availability
from privlab.errors import ConfigError, CorruptArtifactError
from privlab.pipeline import AuditConfig, config_from_dict, load_config, run
from privlab.report import load_report
from privlab.testing.configs import tiny_run_config

TINY = tiny_run_config("tiny")


def _done_keys(run_dir: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("*/done.json")}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory):
    if availability().get("mnist") is not None:
        pytest.skip("MNIST not installed")
    out = tmp_path_factory.mktemp("runs")
    cfg = config_from_dict(TINY | {"output_dir": str(out)})
    return cfg, run(cfg, progress=False, quiet=True)


def test_report_is_produced_and_verifiable(first_run) -> None:
    _cfg, res = first_run
    rep = load_report(res.report_json)
    assert set(rep["models"]) == {"plain", "dp"}
    assert rep["models"]["plain"]["claimed"] is None
    assert rep["models"]["dp"]["claimed"]["epsilon"] == pytest.approx(8.0, rel=0.01)
    assert set(rep["attacks"]["plain"]["attacks"]) == {"loss", "lira_offline", "rmia_offline"}
    # Per-example scores stay in the cached attack result the report points to, not in the report.
    assert "scores" not in rep["attacks"]["plain"]["attacks"]["loss"]
    cached = json.loads((res.run_dir / rep["attacks"]["plain"]["per_example_scores"]).read_text())
    assert len(cached["attacks"]["loss"]["scores"]) == 300
    assert [a["method"] for a in rep["audits"]["dp"]] == ["one_run", "one_run_optimizer"]
    for audit in rep["audits"]["dp"]:
        assert audit["claimed_epsilon"] == pytest.approx(8.0, rel=0.01) and not audit["violates_claim"]
    html = res.report_html.read_text()
    assert 'id="privacy-card"' in html and html.count("<svg") >= 3
    # The DP target is attacked with references trained like it (DP-SGD-style), cached apart.
    assert rep["attacks"]["dp"]["references"]["trained"].startswith("like dp: ")
    assert rep["attacks"]["plain"]["references"]["trained"].startswith("with attack.train")
    assert (res.run_dir / "references-dp").is_dir() and (res.run_dir / "references").is_dir()
    assert "trained like dp: " in html


def test_rerun_reuses_every_stage(first_run, monkeypatch) -> None:
    cfg, res = first_run
    before = _done_keys(res.run_dir)

    def refuse(*_a, **_k):
        raise AssertionError("reference models were rebuilt although every attack stage is cached")

    import importlib

    monkeypatch.setattr(importlib.import_module("privlab.pipeline.run"), "train_references", refuse)
    again = run(cfg, progress=False, quiet=True)
    assert _done_keys(again.run_dir) == before
    assert load_report(again.report_json)["config_hash"] == load_report(res.report_json)["config_hash"]


def test_changed_audit_reruns_only_the_audit(first_run) -> None:
    cfg, res = first_run
    before = _done_keys(res.run_dir)
    cfg2 = replace(cfg, audit=AuditConfig(canaries=50))
    run(cfg2, progress=False, quiet=True)
    after = _done_keys(res.run_dir)
    new = set(after) - set(before)
    assert len(new) == 1 and next(iter(new)).startswith("audit-dp-")
    assert all(after[k] == v for k, v in before.items())


def test_killed_stage_is_redone(first_run) -> None:
    cfg, res = first_run
    stage_dir = next(res.run_dir.glob("target-plain-*"))
    (stage_dir / "done.json").unlink()  # as if killed before finishing
    (stage_dir / "model.safetensors").write_bytes(b"half-written")
    run(cfg, progress=False, quiet=True)
    assert (stage_dir / "done.json").exists()
    assert load_report(res.report_json)["models"]["plain"]["utility"]["test_accuracy"] > 0.5


def test_tampered_report_is_refused(first_run, tmp_path) -> None:
    _cfg, res = first_run
    data = json.loads(res.report_json.read_text())
    data["models"]["dp"]["claimed"]["epsilon"] = 0.1
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(CorruptArtifactError, match="checksum"):
        load_report(bad)


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"dta": {}}, "dta"),
        ({"data": {"population": "many"}}, "data.population"),
        ({"data": {"dataset": "cifar"}}, "data.dataset"),
        ({"targets": [{"name": "a", "dp": {"target_epsilon": -1}}]}, "targets[0].dp.target_epsilon"),
        ({"targets": [{"name": "a", "train": {"epochs": 0}}]}, "targets[0].train.epochs"),
        ({"targets": [{"name": "a", "dp": {"delta": 2}}]}, "targets[0].dp.delta"),
        ({"attack": {"attacks": ["lira", "loss"]}}, "attack.attacks"),
        ({"audit": {"enabled": "yes"}}, "audit.enabled"),
        ({"attack": {"dp_references": "yes"}}, "attack.dp_references"),
        ({"audit": {"canary_gradient": "random"}}, "audit.canary_gradient"),
    ],
)
def test_bad_config_names_the_key(patch: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(TINY | patch)


def test_yaml_round_trip_and_file_errors(tmp_path) -> None:
    cfg = config_from_dict(TINY)
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert load_config(p) == cfg
    p.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("!!python/object/apply:os.system ['true']")  # unsafe YAML is refused, not executed
    with pytest.raises(ConfigError):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_bundled_demo_config_is_valid() -> None:
    from privlab.cli.run import demo_config_path

    cfg = load_config(demo_config_path())
    assert {t.name for t in cfg.targets} == {"non_private", "dp_eps4"}
    assert yaml.safe_load(demo_config_path().read_text())["name"] == "demo"


def test_attack_cache_key_depends_on_reference_architecture() -> None:
    from privlab.pipeline.run import attack_deps
    from privlab.report import config_hash

    cfg = config_from_dict(TINY)
    wider = config_from_dict(TINY | {"targets": [TINY["targets"][0] | {"hidden": [64]}, TINY["targets"][1]]})
    shared = {**TINY["attack"], "dp_references": False}
    cfg_s, wider_s = (config_from_dict(c | {"attack": shared}) for c in (TINY, wider.to_dict()))
    # With shared references (copies of target 0), the unchanged "dp" target's attack still depends on target 0.
    assert config_hash(attack_deps(cfg_s, "dp")) != config_hash(attack_deps(wider_s, "dp"))
    # With references trained like "dp", it does not; target 0's own attack does either way.
    assert config_hash(attack_deps(cfg, "dp")) == config_hash(attack_deps(wider, "dp"))
    assert config_hash(attack_deps(cfg, "plain")) != config_hash(attack_deps(wider, "plain"))
    # dp_references decides how DP targets are attacked only.
    assert config_hash(attack_deps(cfg, "plain")) == config_hash(attack_deps(cfg_s, "plain"))
    assert config_hash(attack_deps(cfg, "dp")) != config_hash(attack_deps(cfg_s, "dp"))
    assert config_hash(attack_deps(cfg, "dp")) == config_hash(attack_deps(config_from_dict(TINY), "dp"))


def test_pipeline_report_renders_in_headless_browser(first_run, tmp_path) -> None:
    import shutil as _sh
    import subprocess

    browser = _sh.which("chromium") or _sh.which("chromium-browser") or _sh.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium here (Debian package chromium; `make test` installs it as root)")
    _cfg, res = first_run
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", res.report_html.resolve().as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="privacy-card"' in dom.stdout
    assert dom.stdout.count('<figure class="roc"><svg') == 2  # one ROC per target
    assert '<figure class="epsilon"><svg' in dom.stdout and '<figure class="utility"><svg' in dom.stdout


def test_pipeline_report_matches_its_schema_and_reads_well_in_chromium(first_run, tmp_path: Path) -> None:
    """What a reader of the pipeline's own report sees: schema-valid, the card's strongest attack and its
    value as computed from report.json, intervals, JSON blocks that are whole (not cut)."""
    import html as htmllib
    import re
    import shutil
    import subprocess

    from typer.testing import CliRunner

    from privlab.cli.main import app
    from privlab.report import attack_curves, strongest_attack
    from privlab.report.tables import fmt

    _cfg, res = first_run
    pytest.importorskip("jsonschema")
    from privlab.report.verify import schema_errors

    assert schema_errors(json.loads(res.report_json.read_text())) == []
    out = CliRunner().invoke(app, ["report", "verify", str(res.report_json)])
    assert out.exit_code == 0 and out.output.startswith("OK "), out.output
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless Chromium here (Debian package chromium; `make test` installs it as root)")
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


def test_dp_references_copy_the_targets_training(first_run, monkeypatch, tmp_path) -> None:
    from privlab.pipeline import stages

    cfg, res = first_run
    rep = load_report(res.report_json)
    sigma = rep["models"]["dp"]["claimed"]["noise_multiplier"]
    seen = []

    def capture(factory, data, mask, tc, **kw):
        seen.append((tc, kw["cache_dir"].name))
        raise RuntimeError("captured")

    monkeypatch.setattr(stages, "train_ensemble", capture)
    pop = stages.load_population(cfg)
    dp_target = stages.TrainedTarget("dp", None, {}, None, sigma, 0.1, 10)  # type: ignore[arg-type]
    for like in (dp_target, None):
        with pytest.raises(RuntimeError, match="captured"):
            stages.train_references(cfg, pop, tmp_path, False, like)
    (dp_tc, dp_dir), (plain_tc, plain_dir) = seen
    assert dp_tc.max_grad_norm == 1.0 and dp_tc.noise_multiplier == sigma and dp_dir == "references-dp"
    assert (dp_tc.batch_size, dp_tc.lr, dp_tc.momentum) == (50, 1.0, 0.0)  # the DP target's own spec
    assert not plain_tc.private and plain_dir == "references" and plain_tc.batch_size == 32


def test_claimed_states_the_noise_source_and_dp_config_checks_it() -> None:
    from privlab.accounting import PrivacyLedger
    from privlab.errors import InvalidParameterError as Invalid
    from privlab.pipeline import stages
    from privlab.pipeline.config import DPConfig

    led = PrivacyLedger(delta=1e-5)
    led.record(1.0, 0.1, 10)
    seeded = stages.TrainedTarget("dp", None, {}, led, 1.0, 0.1, 10)  # type: ignore[arg-type]
    secure = stages.TrainedTarget("dp", None, {}, led, 1.0, 0.1, 10, True)  # type: ignore[arg-type]
    assert stages.claimed(seeded)["noise"] == "seeded"  # type: ignore[index]
    assert stages.claimed(secure)["noise"] == "os_csprng"  # type: ignore[index]
    with pytest.raises(Invalid, match="'secure_rng' parameter of dp"):
        DPConfig(secure_rng="yes")  # type: ignore[arg-type]
