"""Attacking a model that is already trained (``attack_model``, ``privlab attack --model PATH --data ...``).

Positive control: an over-fitted MLP, attacked with its true members, leaks (AUC well above 1/2).
Negative control: the same model with "members" that it never saw is at chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from privlab.attacks.own_model import attack_model, load_trained, model_from_state
from privlab.cli.main import app
from privlab.data import availability, load_dataset
from privlab.errors import InvalidParameterError
from privlab.models import MLP, SmallCNN
from privlab.train import TrainConfig, train_model

SPEC = TrainConfig(epochs=25, batch_size=32, lr=0.1, momentum=0.9, seed=3)
ATTACKS = ("loss", "lira_online", "rmia_online")


def _factory() -> MLP:
    return MLP(in_features=784, hidden=(64,), num_classes=10)


@pytest.fixture(scope="module")
def trained():
    if availability().get("mnist") is not None:
        pytest.skip("MNIST not installed")
    data = load_dataset("mnist", "train").head(1400)
    members, unseen = data.subset(torch.arange(0, 400)), data.subset(torch.arange(400, 1400))
    torch.manual_seed(0)
    model = train_model(_factory(), members, SPEC)
    return model.eval(), members, unseen


def test_overfit_model_leaks_and_unseen_members_do_not(trained) -> None:
    model, members, unseen = trained
    kw = {"n_reference": 4, "n_examples": 800, "n_population": 200, "attacks": ATTACKS, "n_bootstrap": 20,
          "progress": False}
    res = attack_model(model, members, unseen.subset(torch.arange(0, 600)), _factory, SPEC, **kw)
    assert res.config["n_members"] == res.config["n_nonmembers"] == 400
    for name in ATTACKS:
        assert res.metrics[name].auc > 0.6, (name, res.metrics[name].auc)
    fake = attack_model(model, unseen.subset(torch.arange(0, 400)), unseen.subset(torch.arange(400, 1000)),
                        _factory, SPEC, **kw)
    for name in ATTACKS:
        lo, hi = fake.metrics[name].auc_ci
        assert abs(fake.metrics[name].auc - 0.5) < 0.07 and lo < 0.56, (name, fake.metrics[name].auc)


def test_cli_attacks_a_safetensors_model_with_a_membership_file(trained, tmp_path: Path) -> None:
    model, members, unseen = trained
    weights = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    x = torch.cat([members.x, unseen.x[:400]])
    y = torch.cat([members.y, unseen.y[:400]])
    member = torch.cat([torch.ones(400), torch.zeros(400)]).to(torch.uint8)
    data = tmp_path / "data.safetensors"
    save_file({"x": x.contiguous(), "y": y.contiguous(), "member": member}, str(data))
    out = tmp_path / "res.json"
    args = ["attack", "--model", str(weights), "--data", str(data), "--n-reference", "4", "--n-examples", "800",
            "--n-population", "0", "--attacks", "loss,lira_offline", "--bootstrap", "10", "--epochs", "25",
            "--batch-size", "32", "--lr", "0.1", "--output", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "MLP(in_features=784, hidden=(64,), num_classes=10)" in res.output and out.exists()
    bad = CliRunner().invoke(app, ["attack", "--model", str(weights), "--data", str(tmp_path / "none.npz")])
    assert bad.exit_code == 2 and "Cannot read data file" in bad.output
    bad = CliRunner().invoke(app, ["attack", "--model", str(weights), "--data", "cifar10"])
    assert bad.exit_code == 2 and "The --data option must be one of" in bad.output


def test_model_from_state_rebuilds_privlab_models() -> None:
    for model in (MLP(in_features=20, hidden=(7, 5), num_classes=3), SmallCNN(num_classes=4)):
        factory, _ = model_from_state(model.state_dict())
        rebuilt = factory()
        rebuilt.load_state_dict(model.state_dict())  # strict: same architecture
    with pytest.raises(InvalidParameterError, match="model_factory"):
        model_from_state({"w": torch.zeros(2, 2)})


def test_load_trained_reads_a_privlab_train_checkpoint(tmp_path: Path) -> None:
    from privlab.accounting import PrivacyLedger
    from privlab.dp.checkpoint import save_checkpoint

    led = PrivacyLedger(delta=1e-5)
    led.record(1.3, 0.02, 200)
    cfg = {"dataset": "mnist", "model": "mlp", "epochs": 3, "batch_size": 256, "lr": 2.0, "momentum": 0.5,
           "max_grad_norm": 1.5, "noise_multiplier": 1.3}
    save_checkpoint(tmp_path, MLP(), led, cfg)
    tm = load_trained(tmp_path)
    assert tm.dataset == "mnist" and tm.train is not None
    assert (tm.train.epochs, tm.train.batch_size, tm.train.lr, tm.train.momentum) == (3.0, 256, 2.0, 0.5)
    assert tm.train.private and "noise multiplier 1.3" in tm.describe
    assert np.isclose(tm.train.to_dict()["dp_max_grad_norm"], 1.5)
    with pytest.raises(InvalidParameterError, match="path"):
        load_trained(tmp_path / "missing")
