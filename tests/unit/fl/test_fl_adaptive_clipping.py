"""Adaptive clipping follows Andrew et al. 2021: C grows when updates are clipped, shrinks when none is,
and settles at the target quantile of the update norms (clients with known update norms, no training)."""

import math

import pytest
import torch
from scipy.stats import norm as gaussian

from privlab.fl import FedConfig, UserDPConfig
from privlab.fl.inprocess import make_in_process_grid
from privlab.fl.server import run_server

N = 20


def _norm_app(norm_of):
    """A ClientApp whose client i sends the global model plus an update of L2 norm ``norm_of(i)``."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg, context):
        state = msg.content.array_records["arrays"].to_torch_state_dict()
        size = math.sqrt(sum(v.numel() for v in state.values()))
        r = norm_of(int(context.node_config["partition-id"]))
        new = {k: v + r * torch.ones_like(v) / size for k, v in state.items()}  # update of norm r
        return Message(content=RecordDict({"arrays": ArrayRecord(new), "metrics": MetricRecord({"weight": 1.0})}),
                       reply_to=msg)

    return app


def _clip_norms(norm_of, rounds, *, c0=1.0, quantile=0.5, lr=0.2, unpatched=False, monkeypatch=None):
    """The clip norm each round clipped at (z = 0, count noise 1e-9: the norm path is deterministic)."""
    cfg = FedConfig(num_clients=N, clients_per_round=N, rounds=rounds, train_size=1000, eval_size=50, hidden=(4,),
                    dp=UserDPConfig(noise_multiplier=0.0, clip_norm=c0, clipping="adaptive",
                                    clipped_count_stddev=1e-9, target_quantile=quantile, clip_lr=lr))
    if unpatched:  # negative control: Flower's own norm update (noisy fraction of *clipped* updates)
        import types

        from flwr.serverapp.strategy.dp_adaptive_clipping import DifferentialPrivacyAdaptiveBase

        import privlab.fl.server as server

        build = server.build_strategy

        def flower_update(c):
            s = build(c)
            s._noisy_fraction = types.MethodType(DifferentialPrivacyAdaptiveBase._noisy_fraction, s)
            return s

        monkeypatch.setattr(server, "build_strategy", flower_update)
    records, _ = run_server(make_in_process_grid(_norm_app(norm_of), N), cfg, timeout=5)
    return [r.clip_norm for r in records]


def test_clip_norm_grows_when_every_update_is_clipped_and_shrinks_when_none_is():
    up = _clip_norms(lambda i: 100.0, 4)
    down = _clip_norms(lambda i: 1e-3, 4)
    # round t reports the norm it clipped at: C_1 = C_0, then C_{t+1} = C_t exp(-0.2 (b - 0.5)), b = 0 or 1
    assert up == pytest.approx([math.exp(0.1 * t) for t in range(4)], rel=1e-6)
    assert down == pytest.approx([math.exp(-0.1 * t) for t in range(4)], rel=1e-6)


def test_flower_norm_update_moves_the_wrong_way(monkeypatch):
    # the control that the test above can fail: Flower 1.42's update shrinks C when every update is clipped
    got = _clip_norms(lambda i: 100.0, 3, unpatched=True, monkeypatch=monkeypatch)
    assert got == pytest.approx([1.0, math.exp(-0.1), math.exp(-0.2)], rel=1e-6)


@pytest.mark.parametrize("quantile", [0.5, 0.8])
def test_clip_norm_settles_at_the_target_quantile_of_the_update_norms(quantile):
    # client i's update norm: the ((i + 1/2) / N)-quantile of a log-normal, so the gamma-quantile is exp(Phi^-1(gamma))
    norms = [math.exp(gaussian.ppf((i + 0.5) / N)) for i in range(N)]
    got = _clip_norms(lambda i: norms[i], 40, c0=0.1, quantile=quantile, lr=0.5)
    tail = got[-10:]
    fraction_unclipped = sum(sum(r <= c for r in norms) / N for c in tail) / len(tail)
    assert fraction_unclipped == pytest.approx(quantile, abs=0.1)
    target = math.exp(gaussian.ppf(quantile))
    assert sum(tail) / len(tail) == pytest.approx(target, rel=0.25)
    # negative control: the start (every update clipped at C_0 = 0.1) is far from the quantile
    assert sum(r <= got[0] for r in norms) / N < quantile - 0.3
