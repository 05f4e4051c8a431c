"""Review fixes for data-parallel DP-SGD: replicas that would diverge, the dataset fingerprint, DDP.join(),
``privlab train``'s batch size.

One two-rank test (gloo, ``run_ranks``) for the cross-rank agreement on the optimizer and the weights,
with an equal-ranks control; the fingerprint and the join refusal in this process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

import privlab.cli.train as train_cli
from privlab.cli.main import app
from privlab.data import ArrayDataset
from privlab.dp import distributed, make_private
from privlab.errors import InvalidParameterError
from privlab.testing import dp_scenarios as S
from privlab.testing.data_parallel import run_ranks

pytestmark = pytest.mark.timeout(300)


@pytest.mark.multiprocess
def test_ranks_whose_optimizer_or_weights_differ_are_refused_on_every_rank() -> None:
    ranks = []
    for o in run_ranks(S.replicas_that_would_diverge, 2):
        assert o.error is None, f"rank {o.rank} failed: {o.error_type}: {o.error}"
        ranks.append(o.value)
    for out in ranks:
        assert out["lr"].startswith("InvalidParameterError")
        assert "disagree on optimizer.param_groups[0].lr: rank 0 has 0.1, rank 1 has 0.5" in out["lr"]
        assert out["weights"].startswith("InvalidParameterError")
        assert "disagree on weights: rank 0 has" in out["weights"]
        assert "load a checkpoint on every rank" in out["weights"]
        assert out["equal"] == "accepted"  # control: the same optimizer and weights on both ranks
        assert out["join"].startswith("InvalidParameterError")
        assert "inside DistributedDataParallel.join()" in out["join"]


class _Addressed:
    """An example type whose repr is object.__repr__ (a memory address)."""


class _ListOf:
    def __init__(self, items: list[object]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> object:
        return self.items[i]


def test_fingerprint_hashes_numpy_and_pil_by_value_and_refuses_memory_addresses() -> None:
    pil = pytest.importorskip("PIL.Image")
    fp = distributed.dataset_fingerprint

    def images(k: int) -> _ListOf:  # fresh image objects every call: their reprs hold different addresses
        return _ListOf([(pil.fromarray(np.full((4, 4), i + k, dtype=np.uint8)), i) for i in range(10)])

    assert fp(images(0)) == fp(images(0))
    assert fp(images(0)) != fp(images(1))  # control: other pixels
    a = np.zeros((10, 3000), dtype=np.float32)
    b = a.copy()
    b[:, 1500] = 1.0  # numpy's repr elides the middle of a row this long
    assert fp(_ListOf(list(a))) == fp(_ListOf(list(a.copy())))
    assert fp(_ListOf(list(a))) != fp(_ListOf(list(b)))
    assert fp(_ListOf([np.float32(1.0)] * 3)) != fp(_ListOf([np.float32(2.0)] * 3))
    assert fp(_ListOf(["a", 1, None])) == fp(_ListOf(["a", 1, None]))
    with pytest.raises(InvalidParameterError, match=r"'data_loader' parameter of make_private .*_Addressed"):
        fp(_ListOf([(_Addressed(), 0)]))


def test_weights_digest_sees_parameters_and_buffers() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    same = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    same.load_state_dict(m.state_dict())
    assert distributed.weights_digest(m) == distributed.weights_digest(same)
    with torch.no_grad():
        same[1].running_mean += 1.0  # type: ignore[operator]
    assert distributed.weights_digest(m) != distributed.weights_digest(same)


@pytest.fixture
def one_rank_group() -> Iterator[None]:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_ddp_join_is_refused_at_make_private_and_at_the_forward_pass(one_rank_group: None) -> None:
    x, y = S.toy_data()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    net = S.ddp(S.toy_model())
    with net.join(), pytest.raises(InvalidParameterError, match=r"inside DistributedDataParallel\.join\(\)"):
        make_private(net, torch.optim.SGD(net.parameters(), lr=0.1), loader, noise_multiplier=1.0)
    net = S.ddp(S.toy_model())
    pt = make_private(net, torch.optim.SGD(net.parameters(), lr=0.1), loader, noise_multiplier=1.0)
    pt.model(x[:2])  # control: outside join the forward pass runs
    with net.join(), pytest.raises(InvalidParameterError, match=r"Remove the join\(\) context"):
        pt.model(x[:2])
    pt.optimizer.detach()


@pytest.mark.parametrize("world", ["1", "2"])
def test_train_cli_names_batch_size_when_it_exceeds_the_training_set(
    world: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    small = ArrayDataset(torch.rand(200, 1, 28, 28), torch.randint(0, 10, (200,)))
    monkeypatch.setattr(train_cli, "load_dataset", lambda name, split="train", data_dir=None: small)
    monkeypatch.setenv("WORLD_SIZE", world)  # "2": as under torchrun (the check comes before any process group)
    result = CliRunner().invoke(app, ["train", "--noise-multiplier", "1", "--batch-size", "400", "--out",
                                      str(tmp_path)])
    assert result.exit_code == 2, result.output
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # without click's error box
    assert "--batch-size 400 must be at most the size of the mnist training set (200)" in text
    assert ("over all 2 ranks" in text) == (world == "2")
