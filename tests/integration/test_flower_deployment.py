"""Flower as real processes: a SuperLink, SuperNodes and ``flwr run`` on 127.0.0.1.

One deployment, two runs: every node alive (the result must equal the in-process run of the same
config, weight for weight: the processes change the transport, not the computation), then one
SuperNode killed (the run must end with FederatedRunError within the round timeout, not hang).
"""

import pytest
import torch

pytest.importorskip("flwr")

from privlab.fl import FedConfig, FederatedRunError
from privlab.fl.client import make_client_app
from privlab.fl.deploy import FlowerDeployment
from privlab.fl.inprocess import make_in_process_grid
from privlab.fl.server import run_server

pytestmark = pytest.mark.multiprocess

# every client takes part in every round: which node ids Flower samples depends on the ids the
# SuperLink hands out, and the comparison with the in-process run must not
CFG = FedConfig(num_clients=2, clients_per_round=2, rounds=2, train_size=600, eval_size=300, hidden=(32,))


def test_real_processes_match_in_process_and_a_killed_node_fails_the_run(tmp_path):
    records, state = run_server(make_in_process_grid(make_client_app(CFG), CFG.num_clients), CFG)
    with FlowerDeployment(CFG, round_timeout=240.0, timeout=600.0, workdir=tmp_path) as dep:
        assert all(p.poll() is None for p in dep.supernodes)
        got = dep.run()
        assert [r.round for r in got.rounds] == [1, 2]
        assert [r.accuracy for r in got.rounds] == pytest.approx([r.accuracy for r in records], abs=1e-6)
        for k in state:
            torch.testing.assert_close(got.state[k], state[k], rtol=1e-5, atol=1e-6)
        assert got.accuracy > 0.25  # 10 classes: chance is 0.1

        dep.kill_supernode(1)
        with pytest.raises(FederatedRunError, match="sampled clients"):
            dep.run(round_timeout=60.0)
        superlink = dep.superlink
    assert superlink is not None and superlink.poll() is not None  # nothing is left running
    assert all(p.poll() is not None for p in dep.supernodes)
