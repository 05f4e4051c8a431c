"""``FedConfig.secure_rng``: DP noise and client sampling from the OS CSPRNG; seeded runs reproducible;
per-client seeds without collisions."""

import pytest
import torch

from privlab.errors import InvalidParameterError
from privlab.fl import FedConfig, FedResult, UserDPConfig
from privlab.fl.client import build_fl_model, client_seed, distributed_noise_std, make_client_app, train_client
from privlab.fl.inprocess import make_in_process_grid
from privlab.fl.report import fl_section
from privlab.fl.server import run_server

SMALL = dict(num_clients=10, clients_per_round=3, train_size=1000, eval_size=100, hidden=(32,), local_epochs=0.0)


def _distributed(secure):
    return FedConfig(rounds=1, secure_rng=secure, dp=UserDPConfig(noise_multiplier=1.0, clip_norm=0.1,
                                                                   noise="distributed"), **SMALL)


def _flat(state):
    return torch.cat([v.flatten().double() for v in state.values()])


def test_client_noise_is_fresh_with_secure_rng_and_reproducible_without():
    init = build_fl_model(_distributed(False)).state_dict()
    seeded = [_flat(train_client(_distributed(False), 3, 1, init)) for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1])  # the seeded run: identical noise (regenerable from the seed)
    secure = [_flat(train_client(_distributed(True), 3, 1, init)) for _ in range(2)]
    diff = secure[0] - secure[1]  # the clipped update cancels: the difference of two independent noises
    std = distributed_noise_std(_distributed(True))
    assert float(diff.std()) == pytest.approx(2**0.5 * std, rel=0.03)  # ~25k coordinates
    for wrong in (2 / 3, 3 / 2):  # negative controls: a mis-scaled secure noise would be caught
        assert float(diff.std()) != pytest.approx(wrong * 2**0.5 * std, rel=0.1)


def _central_run(secure):
    cfg = FedConfig(rounds=3, secure_rng=secure, dp=UserDPConfig(noise_multiplier=1.0, clip_norm=0.1), **SMALL)
    grid = make_in_process_grid(make_client_app(cfg), cfg.num_clients, record=True)
    records, state = run_server(grid, cfg, timeout=5)
    sampled = [int(m.content.metric_records["metrics"]["client"]) for m in grid.received]
    return cfg, records, state, sampled


def test_central_noise_and_sampling_are_fresh_with_secure_rng_and_reproducible_without():
    _, _, s1, picks1 = _central_run(False)
    _, _, s2, picks2 = _central_run(False)
    assert all(torch.equal(s1[k], s2[k]) for k in s1) and picks1 == picks2
    cfg, records, s3, picks3 = _central_run(True)
    _, _, s4, picks4 = _central_run(True)
    assert not any(torch.equal(s3[k], s4[k]) for k in s3)
    # 3 Poisson rounds at q = 0.3 over 10 clients: the same picks twice has probability
    # (sum over subsets of P(S)^2)^3 = ((0.3^2 + 0.7^2)^10)^3 < 1e-7
    assert picks3 != picks4
    # the report records the setting
    section = fl_section(FedResult(cfg, tuple(records), 1.0, 0.0, s3))
    assert section.data["run"]["config"]["secure_rng"] is True
    assert "OS CSPRNG" in section.summary


def test_client_seeds_do_not_collide():
    cfg = FedConfig(**SMALL)
    # the former seed*1_000_003 + round*10_007 + client mapped (r, c + 10007) and (r + 1, c) to one seed
    assert client_seed(cfg, 1, 10_007) != client_seed(cfg, 2, 0)
    seeds = {client_seed(cfg, r, c) for r in range(1, 4) for c in range(20_100)}
    assert len(seeds) == 3 * 20_100
    assert client_seed(cfg, 1, 0) == client_seed(FedConfig(**SMALL), 1, 0)  # deterministic for a config


def test_secure_rng_must_be_a_bool():
    with pytest.raises(InvalidParameterError, match="'secure_rng' parameter of FedConfig must be a bool"):
        FedConfig(secure_rng="yes", **SMALL)
