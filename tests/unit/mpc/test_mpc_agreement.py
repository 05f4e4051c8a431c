"""What the parties must agree on before a run (the handshake's statement), and a launcher that
does not wait for a rank stuck outside a message wait."""

from __future__ import annotations

import time

import pytest
import torch

from privlab.errors import InvalidParameterError, MPCError
from privlab.mpc import LogRegConfig, MPCConfig, train_logreg
from privlab.mpc import distributed as D
from privlab.mpc.distributed import free_port, run_processes
from privlab.mpc.handshake import BUILT_IN, disagreements, statement, task_fields
from privlab.mpc.inference import architecture_only, infer_task
from privlab.mpc.tasks import eval_task

FAULT = "privlab.testing.mpc_faults:fail_on_party0_hang_on_party1"


def test_parties_on_another_batch_order_seed_disagree_on_the_training_task() -> None:
    x, y = torch.randn(8, 3), torch.ones(8)
    mine = statement(MPCConfig(), "t", task_fields(train_logreg, (x, y, (8, 3), LogRegConfig(seed=1))))
    same = statement(MPCConfig(), "t", task_fields(train_logreg, (None, None, (8, 3), LogRegConfig(seed=1))))
    other = statement(MPCConfig(), "t", task_fields(train_logreg, (None, None, (8, 3), LogRegConfig(seed=2))))
    assert disagreements(mine, 1, {0: same}) == []  # control: the data is not compared, only public facts
    (line,) = disagreements(mine, 1, {0: other})
    assert line.startswith("task.config: rank 1 has") and "'seed': 1" in line and "'seed': 2" in line


def test_an_inference_run_agrees_on_the_declared_input_range() -> None:
    m = torch.nn.Linear(2, 2)
    a = statement(MPCConfig(), "t", task_fields(infer_task, (m, (1, 2), None, (0.0, 1.0))))
    b = statement(MPCConfig(), "t", task_fields(infer_task, (m, (1, 2), None, (-4.0, 4.0))))
    assert [ln.split(":")[0] for ln in disagreements(a, 0, {1: b})] == ["task.input_range"]
    assert disagreements(a, 0, {1: a}) == []


def test_a_statement_missing_a_field_is_a_disagreement_not_a_pass() -> None:
    mine = statement(MPCConfig(), "task", {"model": "m"})
    partial = {k: v for k, v in mine.items() if k not in ("cmp_tree", "model")}
    lines = disagreements(mine, 0, {1: partial})
    assert lines == ["cmp_tree: rank 1 does not state it, rank 0 does", "model: rank 1 does not state it, rank 0 does"]
    assert disagreements(mine, 0, {1: {}}) and len(disagreements(mine, 0, {1: {}})) == len(BUILT_IN) + 2
    # the dealer (rank 2) states only the built-ins: it is compared on those alone
    dealer = statement(MPCConfig())
    assert disagreements(mine, 0, {2: dealer}) == [] and disagreements(dealer, 2, {0: mine}) == []
    assert disagreements(mine, 0, {2: {}})  # but it must state them


def test_the_data_owner_receives_the_architecture_without_the_weights() -> None:
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4).eval())
    m[1].running_mean.add_(1.5)
    bare = architecture_only(m)
    tensors = [t.detach() for t in [*bare.parameters(), *bare.buffers()] if t.is_floating_point()]
    assert all(float(t.abs().sum()) == 0.0 for t in tensors)
    assert float(m[0].weight.detach().abs().sum()) > 0 and float(m[1].running_mean.sum()) == 6.0  # owner copy intact


def test_bad_task_arguments_are_named() -> None:
    with pytest.raises(InvalidParameterError, match="'seed' parameter of LogRegConfig"):
        LogRegConfig(seed=1.5)  # type: ignore[arg-type]
    from privlab.mpc.launch import run_local

    args = ("privlab.mpc.protocols.compare:relu", [torch.ones(2, dtype=torch.float64)], 0, True)
    with pytest.raises(InvalidParameterError, match="'repeat' parameter of eval_task"):
        run_local(eval_task, (args, args))


@pytest.mark.multiprocess
def test_processes_with_different_task_arguments_stop_at_the_handshake_naming_the_field() -> None:
    x = torch.ones(4, dtype=torch.float64)
    a0 = ("privlab.mpc.protocols.compare:relu", [x], 1, True)
    a1 = ("privlab.mpc.protocols.compare:relu", [x], 2, True)
    with pytest.raises(MPCError, match=r"task.repeat: rank \d has 1, rank \d has 2"):
        run_processes(eval_task, (a0, a1), MPCConfig(timeout=20.0), port=free_port(), reimport_main=False)


@pytest.mark.multiprocess
def test_a_rank_stuck_outside_a_message_wait_is_stopped_after_another_failed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(D, "STOP_GRACE", 1.0)
    args = (FAULT, [torch.ones(2, dtype=torch.float64)], 1, True)
    start = time.monotonic()
    with pytest.raises(MPCError) as err:
        run_processes(eval_task, (args, args), MPCConfig(timeout=3.0), port=free_port(), reimport_main=False)
    assert time.monotonic() - start < 45.0  # party 1 sleeps 120 s: it was not waited for
    msg = str(err.value)
    assert "rank 0: RuntimeError: party 0 fails on purpose" in msg
    assert "stuck outside a message wait, and stopped" in msg
