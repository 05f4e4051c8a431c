"""The ``federated:`` config section, the report section and the CLI's error messages."""

import pytest
from typer.testing import CliRunner

from privlab.cli.main import app
from privlab.errors import ConfigError
from privlab.fl import FedConfig, FedResult, UserDPConfig
from privlab.fl.client import make_client_app
from privlab.fl.inprocess import make_in_process_grid
from privlab.fl.inversion import InversionConfig
from privlab.fl.leakage import inversion_experiment
from privlab.fl.report import fl_section
from privlab.fl.server import run_server
from privlab.pipeline.config import config_from_dict
from privlab.report.sections import Section


def test_federated_config_section_is_built_strictly():
    cfg = config_from_dict({"federated": {"num_clients": 20, "clients_per_round": 4, "hidden": [16],
                                          "dp": {"noise_multiplier": 1.0, "clip_norm": 0.5}}})
    assert cfg.federated == FedConfig(num_clients=20, clients_per_round=4, hidden=(16,),
                                      dp=UserDPConfig(noise_multiplier=1.0, clip_norm=0.5))
    assert config_from_dict({}).federated is None
    with pytest.raises(ConfigError, match=r"federated\.dp\.clipp"):
        config_from_dict({"federated": {"dp": {"noise_multiplier": 1.0, "clipp": "fixed"}}})
    with pytest.raises(ConfigError, match=r"federated\.clients_per_round"):
        config_from_dict({"federated": {"num_clients": 5, "clients_per_round": 9}})


def test_report_section_has_epsilon_curve_and_reconstruction_grid(mnist_test):
    cfg = FedConfig(num_clients=10, clients_per_round=5, rounds=2, train_size=1000, eval_size=300, hidden=(32,),
                    dp=UserDPConfig(noise_multiplier=1.0, clip_norm=0.5, noise="distributed"))
    records, state = run_server(make_in_process_grid(make_client_app(cfg), 10), cfg)
    res = FedResult(cfg, tuple(records), 1.0, 0.0, state)
    from privlab.fl.client import build_fl_model

    clf = build_fl_model(cfg)
    clf.load_state_dict(state)
    inv = [inversion_experiment(build_fl_model(cfg, seed=1), mnist_test.head(10), clf, defence=d, num_targets=2,
                                cfg=InversionConfig(method="dlg", steps=20, lr=1.0)) for d in ("none", "secagg")]
    sec = Section.from_dict(fl_section(res, inv).to_dict())
    assert [f.title for f in sec.figures] == ["Epsilon and accuracy per round", "Reconstructions"]
    assert all(f.svg.startswith("<svg") for f in sec.figures)
    eps = [row[2] for row in sec.tables[0].rows]
    assert eps == [r.epsilon for r in records] and eps[0] < eps[1]
    assert sec.data["run"]["final_epsilon"] == records[-1].epsilon


def test_cli_errors_name_the_flag():
    out = CliRunner().invoke(app, ["fl", "run", "--num-clients", "10", "--clients-per-round", "20"])
    assert out.exit_code != 0 and "--clients-per-round" in out.output
    out = CliRunner().invoke(app, ["fl", "run", "--noise-multiplier", "1", "--clipping", "weird"])
    assert out.exit_code != 0 and "--clipping" in out.output


def test_federated_stage_is_cached_and_returns_a_section(tmp_path, mnist_test):
    from privlab.fl.stage import federated_stage

    calls = []

    def runner(cfg, progress=False):
        calls.append(cfg)
        records, state = run_server(make_in_process_grid(make_client_app(cfg), cfg.num_clients), cfg)
        return FedResult(cfg, tuple(records), None, 0.0, state)

    cfg = FedConfig(num_clients=10, clients_per_round=5, rounds=1, train_size=1000, eval_size=300, hidden=(16,))
    sec = federated_stage(cfg, tmp_path, False, inversion_targets=2, runner=runner)
    again = federated_stage(cfg, tmp_path, False, inversion_targets=2, runner=runner)
    assert len(calls) == 1 and sec == again
    assert sec["kind"] == "federated" and len(sec["data"]["inversion"]) == 3
    assert sec["data"]["subject_mia"]["n_members"] == 10 and 0.0 <= sec["data"]["subject_mia"]["auc"] <= 1.0
    assert any(t["title"].startswith("Subject-level membership") for t in sec["tables"])


def test_secagg_configs_are_refused_where_aggregation_is_in_the_clear():
    from privlab.errors import InvalidParameterError
    from privlab.fl.deploy import FlowerDeployment

    cfg = FedConfig(num_clients=4, clients_per_round=4, rounds=1, train_size=400, eval_size=100, hidden=(8,),
                    secagg=True, dp=UserDPConfig(noise_multiplier=1.0, clip_norm=0.1, noise="distributed"))
    with pytest.raises(InvalidParameterError, match="'secagg' parameter of the FedConfig given to FlowerDeployment"):
        FlowerDeployment(cfg)
    with pytest.raises(InvalidParameterError, match="'secagg' parameter of FedConfig is True, but run_server"):
        run_server(make_in_process_grid(make_client_app(cfg), 4), cfg)
    # positive control: the same config in the clear is accepted (no process is started by __init__)
    import dataclasses

    FlowerDeployment(dataclasses.replace(cfg, secagg=False)).close()


@pytest.mark.parametrize(("z", "expected"), [(0.0, 0.0), (0.5, 0.5), (None, 1.0)])
def test_inversions_use_the_runs_noise_multiplier_even_when_it_is_zero(monkeypatch, mnist_test, z, expected):
    import types

    import privlab.fl.leakage as leakage
    from privlab.fl.client import build_fl_model
    from privlab.fl.stage import _inversions

    seen = []
    monkeypatch.setattr(leakage, "inversion_experiment", lambda *a, **kw: seen.append(kw["noise_multiplier"]))
    cfg = FedConfig(num_clients=10, clients_per_round=5, train_size=1000, eval_size=200, hidden=(8,))
    _inversions(cfg, types.SimpleNamespace(noise_multiplier=z, state=build_fl_model(cfg).state_dict()), 2)
    assert seen == [expected] * 3  # one per defence; None (no DP) falls back to z = 1


def test_cli_secure_rng_reaches_the_config(monkeypatch):
    import privlab.fl

    seen = []

    def fake_run(cfg, **kwargs):
        seen.append(cfg)
        raise RuntimeError("stop after the config")

    monkeypatch.setattr(privlab.fl, "run_federated", fake_run)
    for flags in (["--secure-rng"], []):
        out = CliRunner().invoke(app, ["fl", "run", "--num-clients", "10", "--clients-per-round", "2", *flags])
        assert isinstance(out.exception, RuntimeError), out.output
    assert [c.secure_rng for c in seen] == [True, False]
