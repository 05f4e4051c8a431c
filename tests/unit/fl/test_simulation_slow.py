"""Flower's simulation engine on Ray (slow: Ray start-up takes tens of seconds on 2 cores)."""

import pytest

from privlab.fl import FedConfig, UserDPConfig, UserLevelAccountant, run_federated

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("noise", "sampling"), [("central", "poisson"), ("distributed", "fixed")])
def test_simulation_with_dp_reports_the_accountants_epsilon_each_round(mnist_test, noise, sampling):
    cfg = FedConfig(num_clients=20, clients_per_round=5, rounds=3, train_size=2000, eval_size=1000, hidden=(32,),
                    dp=UserDPConfig(noise_multiplier=1.0, clip_norm=0.5, noise=noise))
    assert cfg.sampling == sampling
    res = run_federated(cfg)
    assert res.to_dict()["client_sampling"] == sampling
    acct = UserLevelAccountant(20, 5, 1.0, 1e-5, sampling=sampling)
    for r in res.rounds:
        acct.record_round()
        assert r.epsilon == pytest.approx(acct.epsilon())
    assert res.to_dict()["final_epsilon"] == res.epsilon


def test_simulation_with_secagg_trains(mnist_test):
    cfg = FedConfig(num_clients=10, clients_per_round=5, rounds=2, train_size=2000, eval_size=1000, hidden=(32,),
                    local_epochs=2.0, secagg=True)
    res = run_federated(cfg)
    assert res.accuracy > 0.5


def test_fedavg_100_clients_is_within_2_points_of_centralised(mnist_test):
    from privlab.data import load_mnist
    from privlab.fl.client import build_fl_model
    from privlab.fl.server import evaluate
    from privlab.train import TrainConfig, train_model

    # McMahan et al. 2017's IID MNIST setting (E = 5, B = 10); the benchmark measured a 1.95-point gap
    cfg = FedConfig(num_clients=100, clients_per_round=10, rounds=30, local_epochs=5.0, batch_size=10, lr=0.05,
                    train_size=60000, eval_size=10000)
    res = run_federated(cfg)
    cen = build_fl_model(cfg)
    train_model(cen, load_mnist("train"), TrainConfig(epochs=10.0, batch_size=64, lr=0.05, momentum=0.9))
    acc, _ = evaluate(cen, mnist_test)
    assert res.accuracy >= acc - 0.02
