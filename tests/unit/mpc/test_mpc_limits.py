"""Two time limits: a per-message timeout (a dead peer) and a whole-run deadline, told apart."""

from __future__ import annotations

import time

import pytest
import torch

from privlab.errors import InvalidParameterError, MPCError
from privlab.mpc.config import MPCConfig
from privlab.mpc.distributed import free_port, run_processes
from privlab.mpc.launch import run_local
from privlab.mpc.party import Party
from privlab.mpc.tasks import eval_task

X = torch.linspace(-3, 3, 200, dtype=torch.float64)


def _silent_model_owner(party: Party) -> None:
    """Party 0 never sends; party 1 waits for a message that never comes."""
    if party.rank == 1:
        party.open([torch.zeros(3, dtype=torch.int64)])


def test_per_message_timeout_names_itself() -> None:
    t0 = time.monotonic()
    with pytest.raises(MPCError, match=r"per-message limit\): the peer died") as err:
        run_local(_silent_model_owner, ((), ()), MPCConfig(timeout=0.5))
    assert "deadline" not in str(err.value)
    assert time.monotonic() - t0 < 5


def test_run_deadline_fires_and_does_not_read_as_a_dead_party() -> None:
    args = ("privlab.mpc.protocols.nonlinear:sigmoid", [X], 100_000, True)  # far longer than 1 s
    t0 = time.monotonic()
    with pytest.raises(MPCError, match=r"deadline of 1\.0 s \(MPCConfig\.deadline, the whole-run limit\)") as err:
        run_local(eval_task, (args, args), MPCConfig(timeout=30.0, deadline=1.0))
    assert "died" not in str(err.value) and "no answer" not in str(err.value)
    assert time.monotonic() - t0 < 10  # the deadline, not the 30 s timeout


def test_deadline_is_validated_and_reachable_from_private_inference() -> None:
    from privlab.mpc.inference import private_inference

    with pytest.raises(InvalidParameterError, match=r"'deadline' parameter of MPCConfig"):
        MPCConfig(deadline=0.0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    x = torch.rand(64, 4, generator=torch.Generator().manual_seed(0))
    assert private_inference(m, x, MPCConfig(deadline=60.0)).argmax_agreement == 1.0


@pytest.mark.multiprocess
@pytest.mark.slow  # two gloo runs with process start-up: ~30 s on 2 shared cores
def test_gloo_run_longer_than_timeout_plus_slack_completes_and_deadline_is_named() -> None:
    """The launcher used to stop everything at ``timeout + slack`` with "no answer from ranks"."""
    args = ("privlab.mpc.protocols.nonlinear:sigmoid", [X], 40, True)
    t0 = time.monotonic()
    res = run_processes(eval_task, (args, args), MPCConfig(timeout=3.0), port=free_port(), slack=0.5)
    assert time.monotonic() - t0 > 3.5  # longer than timeout + slack, yet healthy
    assert torch.allclose(res.outputs[0], torch.sigmoid(X), atol=3e-3)
    long = ("privlab.mpc.protocols.nonlinear:sigmoid", [X], 100_000, True)
    with pytest.raises(MPCError, match=r"stopped by its deadline of 2\.0 s .*not a dead party") as err:
        run_processes(eval_task, (long, long), MPCConfig(timeout=30.0, deadline=2.0), port=free_port(), slack=20.0)
    assert "no answer" not in str(err.value)
