"""SecAgg+ (Flower's workflow and mod) over privlab clients: correct sum, nothing in the clear, dropouts."""

import contextlib
import time

import numpy as np
import pytest
import torch

from privlab.fl import FedConfig
from privlab.fl.client import build_fl_model, train_client
from privlab.fl.inprocess import blank_context, make_in_process_grid
from privlab.fl.secagg import SecAggError, make_secagg_client_app, run_secagg_server

CFG = FedConfig(
    num_clients=10, clients_per_round=10, rounds=1, train_size=1000, eval_size=200, hidden=(32,), secagg=True
)
TOL = 2 * 8.0 / 2**22 * 10  # quantisation: 2^22 levels over [-8, 8], summed over 10 clients


def _true_models(clients):
    init = build_fl_model(CFG).state_dict()
    return {c: train_client(CFG, c, 1, init) for c in clients}


def _arrays_seen(grid):
    """Every numeric array in every reply the server received (array records and byte-encoded configs)."""
    from flwr.common import bytes_to_ndarray

    out = []
    for msg in grid.received:
        if msg.has_error():
            continue
        for rec in msg.content.array_records.values():
            out += [np.asarray(a, dtype=np.float64).ravel() for a in rec.to_numpy_ndarrays()]
        for rec in msg.content.config_records.values():
            for v in rec.values():
                for b in v if isinstance(v, list) else [v]:
                    if isinstance(b, bytes):
                        with contextlib.suppress(Exception):  # keys, ciphertexts: not arrays
                            out.append(np.asarray(bytes_to_ndarray(b), dtype=np.float64).ravel())
    return out


def test_secagg_sum_is_exact_and_server_never_sees_an_update():
    grid = make_in_process_grid(make_secagg_client_app(CFG), CFG.num_clients, record=True)
    _, state = run_secagg_server(grid, blank_context(), CFG, timeout=20)
    truth = _true_models(range(10))
    for k in state:
        mean = torch.stack([truth[c][k] for c in truth]).mean(0)
        assert torch.allclose(state[k], mean, atol=TOL)
    seen = _arrays_seen(grid)
    assert seen, "the server received masked vectors"
    w = "net.1.weight"  # first layer: 32 x 784
    for c, model in truth.items():
        u = model[w].double().ravel().numpy()
        for a in seen:
            if a.size == u.size:
                corr = abs(np.corrcoef(a, u)[0, 1])
                assert corr < 0.05, f"client {c}'s weights are visible to the server (corr {corr:.3f})"
    # positive control: the same check does flag a plain FedAvg reply (the model in the clear)
    assert abs(np.corrcoef(truth[0][w].double().ravel().numpy(), truth[0][w].double().ravel().numpy())[0, 1]) > 0.99


def test_dropped_client_gives_the_mean_of_the_survivors():
    dropped = {3}
    app = make_secagg_client_app(CFG, fail=lambda c, r: c in dropped)
    grid = make_in_process_grid(app, CFG.num_clients)
    _, state = run_secagg_server(grid, blank_context(), CFG, timeout=20)
    truth = _true_models([c for c in range(10) if c not in dropped])
    for k in state:
        mean = torch.stack([truth[c][k] for c in truth]).mean(0)
        assert torch.allclose(state[k], mean, atol=TOL)


def test_too_many_dropouts_end_in_a_clear_error_not_a_hang():
    app = make_secagg_client_app(CFG, fail=lambda c, r: c < 8)
    grid = make_in_process_grid(app, CFG.num_clients)
    t0 = time.perf_counter()
    with pytest.raises(SecAggError, match="dropped out"):
        run_secagg_server(grid, blank_context(), CFG, timeout=5)
    assert time.perf_counter() - t0 < 60


def test_silent_dropout_after_key_sharing_is_survived():
    # no reply at all (a vanished node) from client 5 once keys are shared, before its masked vector:
    # SecAgg+ removes its masks with the other clients' Shamir shares and carries on without it
    state_calls = {"n": 0}

    def drop(client, _type):
        state_calls["n"] += 1
        return client == 5 and state_calls["n"] > 20  # after setup and key sharing (10 messages each)

    grid = make_in_process_grid(make_secagg_client_app(CFG), CFG.num_clients, drop=drop)
    _, state = run_secagg_server(grid, blank_context(), CFG, timeout=5)
    truth = _true_models([c for c in range(10) if c != 5])
    k = "net.3.bias"
    assert torch.allclose(state[k], torch.stack([truth[c][k] for c in truth]).mean(0), atol=TOL)


def _dp_cfg(m, **kw):
    from privlab.fl import UserDPConfig

    return FedConfig(num_clients=m, clients_per_round=m, rounds=1, train_size=100 * m, eval_size=100, hidden=(32,),
                     secagg=True, lr=1e-9, local_epochs=0.0,
                     dp=UserDPConfig(noise_multiplier=1.0, clip_norm=0.1, noise="distributed"), **kw)


@pytest.mark.parametrize("dropped", [set(), {3}, {0, 1, 2, 3, 4}])
def test_distributed_dp_noise_stays_at_least_z_c_after_dropouts(dropped):
    # lr 1e-9: the updates are ~0, so the global model moves by the survivors' mean noise
    z, c, m = 1.0, 0.1, 10
    cfg = _dp_cfg(m)
    init = build_fl_model(cfg).state_dict()
    app = make_secagg_client_app(cfg, fail=lambda cl, r: cl in dropped)
    records, state = run_secagg_server(make_in_process_grid(app, m), blank_context(), cfg, timeout=20)
    survivors = m - len(dropped)
    sum_std = float(torch.cat([(state[k].double() - init[k].double()).flatten() for k in init]).std()) * survivors
    z_eff = sum_std / c
    k_min = 5  # ceil(SECAGG_THRESHOLD * m): every client adds N(0, z^2 C^2 / 5)
    assert z_eff == pytest.approx(z * (survivors / k_min) ** 0.5, rel=0.03)
    assert z_eff >= z * 0.97  # the accounted z is a lower bound (3%: estimation error over ~25k coordinates)
    assert records[-1].epsilon is not None
    # negative control: the former calibration to all m clients, z sqrt(m'/m), is far off when m' < m
    if dropped:
        assert z_eff != pytest.approx(z * (survivors / m) ** 0.5, rel=0.1)


def test_a_round_summing_fewer_vectors_than_the_noise_calibration_is_refused():
    cfg = _dp_cfg(5)  # k_min = ceil(5 / 2) = 3, Flower's threshold round(2.5) = 2
    app = make_secagg_client_app(cfg, fail=lambda c, r: c < 3)
    with pytest.raises(SecAggError, match="summed 2 masked vectors, fewer than the 3"):
        run_secagg_server(make_in_process_grid(app, 5), blank_context(), cfg, timeout=20)
    # positive control: 3 survivors are enough
    app = make_secagg_client_app(cfg, fail=lambda c, r: c < 2)
    records, _ = run_secagg_server(make_in_process_grid(app, 5), blank_context(), cfg, timeout=20)
    assert len(records) == 1


def test_a_config_whose_quantised_sum_can_wrap_is_refused():
    from privlab.errors import InvalidParameterError

    expected = r"'clients_per_round' parameter of FedConfig must be .*\[2, 1023\]"
    with pytest.raises(InvalidParameterError, match=expected):
        FedConfig(num_clients=2000, clients_per_round=1024, train_size=60000, secagg=True)
    FedConfig(num_clients=2000, clients_per_round=1023, train_size=60000, secagg=True)  # the largest that fits
    FedConfig(num_clients=2000, clients_per_round=1024, train_size=60000)  # in the clear: no modulus


def test_a_value_outside_the_quantisation_range_is_an_error_not_a_silent_clip(monkeypatch):
    import privlab.fl.secagg as secagg

    real = secagg.train_client

    def big_for_client_3(cfg, client, rnd, state):
        new = real(cfg, client, rnd, state)
        return {k: v + 10.0 for k, v in new.items()} if client == 3 else new

    monkeypatch.setattr(secagg, "train_client", big_for_client_3)
    grid = make_in_process_grid(make_secagg_client_app(CFG), CFG.num_clients)
    with pytest.raises(SecAggError, match=r"client 3's model in round 1 has a value of magnitude .*outside SecAgg"):
        run_secagg_server(grid, blank_context(), CFG, timeout=20)
    # the check itself: inside passes, outside and NaN raise
    secagg.check_quantisable({"w": torch.tensor([7.9, -8.0])}, 0, 1)
    for bad in (8.01, float("nan")):
        with pytest.raises(SecAggError):
            secagg.check_quantisable({"w": torch.tensor([bad])}, 0, 1)
