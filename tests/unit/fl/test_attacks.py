"""Gradient inversion (DLG, IG) with and without defences; subject-level membership inference with controls."""

import pytest
import torch

from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.fl.inversion import InversionConfig, infer_label, invert_gradient, model_gradient
from privlab.fl.leakage import inversion_experiment
from privlab.fl.subject_mia import subject_membership_attack
from privlab.models import build_model
from privlab.train import TrainConfig, train_model


@pytest.fixture(scope="module")
def setup(mnist_test):
    torch.manual_seed(0)
    clf = train_model(build_model("mlp", hidden=(64,)), mnist_test.subset(torch.arange(2000, 5000)),
                      TrainConfig(epochs=2, batch_size=64, lr=0.1))
    torch.manual_seed(1)
    return build_model("mlp", hidden=(64,)), mnist_test.head(16), clf, mnist_test.x[2000:5000].mean(0, keepdim=True)


@pytest.mark.parametrize("method", ["dlg", "ig"])
def test_batch1_fedsgd_inversion_without_defence_recovers_the_image(setup, method):
    model, data, clf, mean = setup
    cfg = InversionConfig(method=method, steps=100, lr=1.0 if method == "dlg" else 0.1)
    res = inversion_experiment(model, data, clf, defence="none", num_targets=6, cfg=cfg, mean_image=mean)
    assert sum(p > 20.0 for p in res.psnr) >= 5  # most images
    assert res.recognisability >= 5 / 6


@pytest.mark.parametrize("defence", ["dp", "secagg"])
def test_defences_push_inversion_to_noise_level(setup, defence):
    model, data, clf, mean = setup
    cfg = InversionConfig(method="dlg", steps=100, lr=1.0)
    res = inversion_experiment(model, data, clf, defence=defence, num_targets=6, cfg=cfg, mean_image=mean,
                               noise_multiplier=1.0, clip_norm=1.0, secagg_clients=10)
    # no better than guessing the dataset's mean image, and no longer recognisable
    assert res.median_psnr < res.baseline_psnr_mean_image
    # a sum over 10 clients can still isolate the odd image through a first-layer unit that only it
    # activates (a known weakness of aggregates of linear layers); most images stay at noise level
    assert sum(p > 20.0 for p in res.psnr) <= 1
    assert res.recognisability <= 0.5


def test_idlg_label_and_bad_gradients(setup):
    model, data, _, _ = setup
    g = model_gradient(model, data.x[:1], data.y[:1])
    assert infer_label(model, g) == int(data.y[0])
    with pytest.raises(InvalidParameterError, match="'grads'"):
        invert_gradient(model, g[:-1], (1, 28, 28))
    with pytest.raises(InvalidParameterError, match="'method'"):
        InversionConfig(method="magic")


def test_subject_mia_beats_chance_on_a_memorising_model_and_not_on_an_unrelated_one(mnist_test):
    subjects = [mnist_test.subset(torch.arange(i * 10, i * 10 + 10)) for i in range(60)]
    members, nonmembers = subjects[:30], subjects[30:]
    pool = ArrayDataset(torch.cat([s.x for s in members]), torch.cat([s.y for s in members]))
    torch.manual_seed(0)
    memorising = train_model(build_model("mlp", hidden=(128,)), pool, TrainConfig(epochs=60, batch_size=32, lr=0.1))
    assert subject_membership_attack(memorising, members, nonmembers).auc > 0.8
    other = ArrayDataset(mnist_test.x[5000:5300], mnist_test.y[5000:5300])
    torch.manual_seed(0)
    unrelated = train_model(build_model("mlp", hidden=(128,)), other, TrainConfig(epochs=60, batch_size=32, lr=0.1))
    res = subject_membership_attack(unrelated, members, nonmembers)
    assert res.auc_ci[0] < 0.5 < res.auc_ci[1] or abs(res.auc - 0.5) < 0.2  # negative control: chance


def test_label_matched_subjects_copy_label_counts_and_never_reuse_an_example(mnist_test):
    from privlab.fl.subject_mia import label_matched_subjects

    members = [mnist_test.subset(torch.arange(i * 7, i * 7 + 7)) for i in range(5)]
    pool = mnist_test.subset(torch.arange(1000, 3000))
    got = label_matched_subjects(pool, members, seed=1)
    for m, g in zip(members, got, strict=True):
        assert sorted(m.y.tolist()) == sorted(g.y.tolist())
    rows = torch.cat([g.x.flatten(1) for g in got])
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0]  # drawn without replacement
    with pytest.raises(InvalidParameterError, match="'pool'"):
        label_matched_subjects(pool.head(5), members)


def test_subject_mia_on_a_federated_run_separates_clients_and_not_before_training():
    from privlab.fl import FedConfig
    from privlab.fl.client import build_fl_model, make_client_app
    from privlab.fl.inprocess import make_in_process_grid
    from privlab.fl.server import run_server
    from privlab.fl.subject_mia import subject_mia_experiment

    # 30 clients of 20 examples, all in every round, many local epochs: the global model memorises
    cfg = FedConfig(num_clients=30, clients_per_round=30, rounds=4, local_epochs=10.0, batch_size=10, lr=0.1,
                    train_size=600, eval_size=200, hidden=(128,))
    _, state = run_server(make_in_process_grid(make_client_app(cfg), cfg.num_clients), cfg)
    trained = subject_mia_experiment(cfg, state)
    assert trained.n_members == trained.n_nonmembers == 30
    assert trained.auc > 0.75 and trained.auc_ci[0] > 0.5
    untrained = subject_mia_experiment(cfg, build_fl_model(cfg).state_dict())  # negative control
    assert untrained.auc_ci[0] < 0.5 < untrained.auc_ci[1] or abs(untrained.auc - 0.5) < 0.2
