"""Client sampling: Poisson for central DP (the mechanism the headline accountant bounds), exactly m
otherwise, each with its own bound."""

import numpy as np
import pytest
import torch

from privlab.accounting.fixed_size import fixed_size_epsilon
from privlab.dp.noise import derive_seed
from privlab.errors import InvalidParameterError
from privlab.fl import FedConfig, FedResult, UserDPConfig, UserLevelAccountant, noise_multiplier_of
from privlab.fl.client import build_fl_model, make_client_app, train_client
from privlab.fl.inprocess import make_in_process_grid
from privlab.fl.report import fl_section
from privlab.fl.sampling import poisson_draw
from privlab.fl.server import run_server

SMALL = dict(num_clients=10, train_size=1000, eval_size=100, hidden=(16,), local_epochs=0.0)


def test_poisson_draws_are_independent_per_client_with_rate_q():
    n, q, trials = 100, 0.1, 3000
    rng = np.random.default_rng(0)
    picks = np.zeros((trials, n), dtype=bool)
    for t in range(trials):
        picks[t, [i - 1 for i in poisson_draw(list(range(1, n + 1)), q, rng)]] = True
    sizes = picks.sum(1)
    # Binomial(100, 0.1): mean 10, variance 9; the standard error of the sample variance is ~0.24
    assert sizes.mean() == pytest.approx(10, abs=0.2) and sizes.var() == pytest.approx(9, abs=1.0)
    assert np.abs(picks.mean(0) - q).max() < 0.025  # every client at rate q (sd 0.0055 each)
    # (exactly-m sampling, Flower's, has the same mean and variance 0: the variance check is what fails it)
    # the draw does not depend on the order the grid lists the nodes in
    ids = [5, 3, 9, 1, 7]
    assert poisson_draw(ids, 0.5, np.random.default_rng(4)) == poisson_draw(sorted(ids), 0.5, np.random.default_rng(4))


def _first_round(seed, q):
    """The nodes (ids 1..10) the server's seeded Poisson draw picks in round 1."""
    return poisson_draw(list(range(1, 11)), q, np.random.default_rng(derive_seed(seed, "client-sampling", 1)))


def _cfg(seed, m, z):
    dp = UserDPConfig(noise_multiplier=z, clip_norm=1e6 if z == 0 else 0.5)
    return FedConfig(rounds=1, clients_per_round=m, seed=seed, lr=0.5, dp=dp, **SMALL)


def test_a_poisson_round_sums_the_clipped_updates_over_the_expected_m():
    seed = next(s for s in range(100) if len(_first_round(s, 0.5)) not in (0, 5))  # |S| != m = 5
    cfg = _cfg(seed, 5, 0.0)  # q = 0.5, no noise, no clipping: the aggregate is exact
    assert cfg.sampling == "poisson"
    grid = make_in_process_grid(make_client_app(cfg), cfg.num_clients, record=True)
    _, state = run_server(grid, cfg, timeout=5)
    picked = sorted(int(m.content.metric_records["metrics"]["client"]) for m in grid.received)
    assert picked == [i - 1 for i in _first_round(seed, 0.5)]  # the seeded draw over node ids 1..10
    assert len(picked) not in (0, 5)
    init = build_fl_model(cfg).state_dict()
    updates = [train_client(cfg, c, 1, init) for c in picked]
    for k in init:
        total = sum(u[k] - init[k] for u in updates)
        assert torch.allclose(state[k], init[k] + total / 5, atol=1e-6)
    # negative control: the mean over the |S| replies (Flower's FedAvg) is a different model
    k = next(iter(init))
    mean = init[k] + sum(u[k] - init[k] for u in updates) / len(picked)
    assert not torch.allclose(state[k], mean, atol=1e-6)


def test_a_round_nobody_joined_still_releases_noise():
    seed = next(s for s in range(200) if not _first_round(s, 0.2))  # P(empty) = 0.8^10 = 0.11 per seed
    init = build_fl_model(_cfg(seed, 2, 1.0)).state_dict()
    grid = make_in_process_grid(make_client_app(_cfg(seed, 2, 1.0)), 10, record=True)
    _, noisy = run_server(grid, _cfg(seed, 2, 1.0), timeout=5)
    assert grid.received == []
    delta = torch.cat([(noisy[k] - init[k]).flatten() for k in init])
    assert float(delta.std()) == pytest.approx(1.0 * 0.5 / 2, rel=0.05)  # z C / m, ~12.9k coordinates
    # control: the same empty round without noise leaves the model where it was
    _, quiet = run_server(make_in_process_grid(make_client_app(_cfg(seed, 2, 0.0)), 10), _cfg(seed, 2, 0.0), timeout=5)
    assert all(torch.equal(quiet[k], init[k]) for k in init)


def test_each_sampling_is_accounted_with_its_own_bound():
    poisson = UserLevelAccountant(100, 10, 1.0, 1e-5)
    fixed = UserLevelAccountant(100, 10, 1.0, 1e-5, sampling="fixed")
    for a in (poisson, fixed):
        a.record_round(20)
    assert poisson.epsilon() == pytest.approx(poisson.epsilon_poisson()) and poisson.epsilon() < 4.0
    assert fixed.epsilon() == pytest.approx(fixed_size_epsilon(1.0, 100, 10, 20, 1e-5))
    assert fixed.epsilon() > 5 * poisson.epsilon()  # 24.9 against 3.59: the bounds are not interchangeable
    with pytest.raises(InvalidParameterError, match="'sampling' parameter of UserLevelAccountant"):
        UserLevelAccountant(100, 10, 1.0, 1e-5, sampling="uniform")


def test_target_epsilon_is_calibrated_against_the_bound_that_runs():
    dist = FedConfig(num_clients=100, clients_per_round=10, rounds=20,
                     dp=UserDPConfig(target_epsilon=8.0, noise="distributed"))
    central = FedConfig(num_clients=100, clients_per_round=10, rounds=20, dp=UserDPConfig(target_epsilon=8.0))
    assert (dist.sampling, central.sampling) == ("fixed", "poisson")
    z_fixed, z_poisson = noise_multiplier_of(dist), noise_multiplier_of(central)
    assert fixed_size_epsilon(z_fixed, 100, 10, 20, 1e-5) == pytest.approx(8.0, rel=0.01)
    assert fixed_size_epsilon(z_fixed, 100, 10, 20, 1e-5) <= 8.0
    # negative control: the Poisson calibration would overspend the fixed-size budget
    assert fixed_size_epsilon(z_poisson, 100, 10, 20, 1e-5) > 8.0


def test_client_sampling_is_checked_and_resolved():
    assert FedConfig(**SMALL).sampling == "fixed"  # no DP: Flower's sampling
    assert FedConfig(dp=UserDPConfig(noise_multiplier=1.0), client_sampling="fixed", **SMALL).sampling == "fixed"
    with pytest.raises(InvalidParameterError, match="'client_sampling' parameter of FedConfig can be 'poisson' only"):
        FedConfig(dp=UserDPConfig(noise_multiplier=1.0, noise="distributed"), client_sampling="poisson", **SMALL)
    with pytest.raises(InvalidParameterError, match="'client_sampling' parameter of FedConfig"):
        FedConfig(client_sampling="bernoulli", **SMALL)


def test_the_report_names_the_sampling_and_its_bound():
    cfg = _cfg(0, 2, 1.0)
    records, state = run_server(make_in_process_grid(make_client_app(cfg), 10), cfg, timeout=5)
    res = FedResult(cfg, tuple(records), 1.0, 0.0, state)
    table = fl_section(res).tables[0]
    assert "client sampling: poisson" in table.note and "add/remove" in table.note
    # a Poisson round's time grows with how many joined: per-round times are not published
    assert records[0].seconds > 0 and all(row[-1] is None for row in table.rows)
    assert all(r["seconds"] is None for r in res.to_dict()["rounds"]) and "Per-round times are left out" in table.note
    fixed = FedConfig(rounds=1, clients_per_round=2, dp=UserDPConfig(noise_multiplier=1.0), client_sampling="fixed",
                      **SMALL)
    records, state = run_server(make_in_process_grid(make_client_app(fixed), 10), fixed, timeout=5)
    table = fl_section(FedResult(fixed, tuple(records), 1.0, 0.0, state)).tables[0]
    note = table.note
    assert table.rows[0][-1] > 0  # control: exactly-m rounds keep their times
    assert "client sampling: fixed" in note and "replace one user" in note
    assert records[0].epsilon == pytest.approx(fixed_size_epsilon(1.0, 10, 2, 1, 1e-5))


def test_the_inversion_note_says_whom_the_dp_row_protects_against():
    from privlab.fl.report import inversion_note

    central = inversion_note(FedConfig(dp=UserDPConfig(noise_multiplier=1.0), **SMALL))
    assert "'none' row is what this run's server can reconstruct" in central
    distributed = inversion_note(FedConfig(dp=UserDPConfig(noise_multiplier=1.0, noise="distributed"), **SMALL))
    assert "what this run's clients send" in distributed and "'none' row" not in distributed
    assert "this run had no DP" in inversion_note(FedConfig(**SMALL))
