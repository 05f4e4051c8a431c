"""Data-parallel DP-SGD on DistributedDataParallel: the same mechanism as one process, noise drawn once.

Real gloo ranks (``privlab.testing.data_parallel.run_ranks``) for the collectives; the shard sampler
in-process. The noise test has a negative control (every rank adding noise is rejected by the same
test), the equivalence test a control that one rank's examples alone give another update.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from scipy import stats
from torch import nn
from torch.utils.data import TensorDataset

from privlab.dp import allreduce, distributed
from privlab.dp.checkpoint import load_checkpoint
from privlab.dp.sampling import PoissonSampler, PrivateDataLoader, ShardSampler, UnitPoissonSampler
from privlab.errors import InvalidParameterError
from privlab.testing import dp_scenarios as S
from privlab.testing.data_parallel import run_ranks

pytestmark = pytest.mark.timeout(300)
WORLD = 2
MODES = ["flat", "per_layer", "ghost"]


def _values(outcomes: list) -> list:
    for o in outcomes:
        assert o.error is None, f"rank {o.rank} failed: {o.error_type}: {o.error}"
    return [o.value for o in outcomes]


@pytest.mark.multiprocess
def test_ddp_step_equals_one_process_on_the_union_of_the_ranks_batches() -> None:
    indices = list(range(16))
    ranks = _values(run_ranks(S.ddp_one_step, WORLD, (MODES, 8, indices)))
    for mode in MODES:
        union = S.one_step(S.toy_model(), mode, 8 * WORLD, indices)
        rank0_alone = S.one_step(S.toy_model(), mode, 8 * WORLD, indices[0::WORLD])  # control
        for r, got in enumerate(ranks):
            for k, v in union.items():
                assert torch.allclose(got[mode][k], v, atol=1e-6), f"{mode}: rank {r} differs on {k}"
        assert any(not torch.allclose(rank0_alone[k], v, atol=1e-4) for k, v in union.items())
        assert all(torch.equal(ranks[0][mode][k], ranks[1][mode][k]) for k in union), f"{mode}: replicas differ"
        single = S.one_step(S.toy_model(), mode, 8 * WORLD, indices[:1])  # rank 1's batch is empty
        for got in ranks:
            assert all(torch.allclose(got[f"{mode}, one example"][k], v, atol=1e-6) for k, v in single.items())


@pytest.mark.multiprocess
def test_per_layer_buckets_sent_during_the_backward_pass_give_the_one_process_update() -> None:
    """Every parameter in its own bucket: rank 1's empty batch sends everything at step(), rank 0's
    buckets start during its backward pass; the pairing must hold and the update equal one process's."""
    indices = list(range(16))
    ranks = _values(run_ranks(S.ddp_one_step, WORLD, (["per_layer"], 8, indices, S.TINY_BUCKETS)))
    for key, idx in (("per_layer", indices), ("per_layer, one example", indices[:1])):
        union = S.one_step(S.toy_model(), "per_layer", 8 * WORLD, idx)
        for got in ranks:
            assert all(torch.allclose(got[key][k], v, atol=1e-6) for k, v in union.items()), key


@pytest.mark.multiprocess
def test_overlapped_per_layer_all_reduce_equals_the_one_buffer_all_reduce_with_virtual_batches() -> None:
    """Three logical batches of chunks of 3 through a model with a layer called twice (its sum is final
    only at step(), so the buckets after it wait): the same weights with tiny buckets as with one
    buffer. Control: with DDP's default buckets (the whole model is one) nothing is sent early."""
    tiny, one = (_values(run_ranks(S.overlapped_training, WORLD, (cap,))) for cap in (S.TINY_BUCKETS, None))
    assert tiny[0]["buckets"] == 8 and one[0]["buckets"] == 1
    assert all(n > 0 for r in tiny for n in r["early"]), [r["early"] for r in tiny]
    assert all(n == 0 for r in one for n in r["early"])
    for r in (*tiny, one[1]):
        for k, v in one[0]["state"].items():
            assert torch.allclose(r["state"][k], v, atol=1e-6), k
    start = S.TwiceMLP().state_dict()
    assert any(not torch.allclose(start[k], v) for k, v in one[0]["state"].items())


def _noise_rejected(grads: torch.Tensor, std: float) -> bool:
    """Two-sided chi-square test (alpha 1e-6) of 'the entries are i.i.d. N(0, std^2)'."""
    x = grads.flatten().double()
    stat = float((x / std).pow(2).sum())
    p = stats.chi2.cdf(stat, x.numel())
    return bool(min(p, 1 - p) < 0.5e-6)


@pytest.mark.multiprocess
def test_noise_is_drawn_once_per_logical_batch_and_the_replicas_stay_equal(tmp_path: Path) -> None:
    steps = 6
    ranks = _values(run_ranks(S.noise_steps, WORLD, (steps, False, str(tmp_path / "ckpt"))))
    std = 1.0 / (8 * WORLD)  # sigma C / (expected global batch)
    assert ranks[0]["sample_rate"] == pytest.approx(8 * WORLD / 160)
    assert torch.equal(ranks[0]["grads"], ranks[1]["grads"]) and torch.equal(ranks[0]["weight"], ranks[1]["weight"])
    assert not _noise_rejected(ranks[0]["grads"], std)
    assert not torch.equal(ranks[0]["grads"][0], ranks[0]["grads"][1])  # fresh noise each step
    assert ranks[0]["epsilon"] == ranks[1]["epsilon"] > 0
    # the ranks sample disjoint shards (example i on rank i mod W)
    for r, out in enumerate(ranks):
        assert all(i % WORLD == r for batch in out["indices"] for i in batch)
    # the ranks' coins are their own: the local positions they sample differ
    local = [[sorted(i // WORLD for i in batch) for batch in out["indices"]] for out in ranks]
    assert local[0] != local[1]
    # the DDP model's checkpoint loads into the bare model, with the whole training's ledger
    bare = nn.Linear(50, 40, bias=False)
    ckpt = load_checkpoint(tmp_path / "ckpt", bare)
    assert torch.equal(bare.weight, ranks[0]["weight"]) and ckpt.ledger.steps == steps
    # negative control: every rank noising every coordinate is rejected by the same test
    doubled = _values(run_ranks(S.noise_steps, WORLD, (steps, True)))
    assert _noise_rejected(doubled[0]["grads"], std)


@pytest.mark.multiprocess
def test_noise_is_drawn_once_when_per_layer_buckets_are_sent_during_the_backward_pass() -> None:
    args = (8, False, None, "per_layer", S.TINY_BUCKETS)  # the bias's bucket leaves during the backward pass
    ranks = _values(run_ranks(S.noise_steps, WORLD, args))
    assert ranks[0]["grads"].shape == (8, 40 * 50 + 40)
    assert torch.equal(ranks[0]["grads"], ranks[1]["grads"])
    assert not _noise_rejected(ranks[0]["grads"], 1.0 / (8 * WORLD))
    doubled = _values(run_ranks(S.noise_steps, WORLD, (8, True, None, "per_layer", S.TINY_BUCKETS)))
    assert _noise_rejected(doubled[0]["grads"], 1.0 / (8 * WORLD))


@pytest.mark.multiprocess
def test_ranks_that_disagree_on_the_mechanism_are_refused_on_every_rank() -> None:
    outcomes = run_ranks(S.disagreeing_clip, WORLD)
    for o in outcomes:
        assert o.error_type == "InvalidParameterError"
        assert "max_grad_norm: rank 0 has 1.0, rank 1 has 2.0" in (o.error or "")


@pytest.mark.multiprocess
def test_a_rank_refused_by_a_parameter_check_stops_the_others_at_once() -> None:
    outcomes = run_ranks(S.one_rank_refused, WORLD, timeout=60.0, pg_timeout=600.0)
    assert outcomes[1].error_type == "InvalidParameterError" and "'clipping' parameter" in (outcomes[1].error or "")
    assert outcomes[0].error_type == "InvalidParameterError", outcomes[0]
    assert "make_private was refused on rank 1 of 2, so every rank stops: InvalidParameterError: The 'clipping'" in (
        outcomes[0].error or ""
    )


BUCKETED = [("flat", None), ("per_layer", S.TINY_BUCKETS)]


@pytest.mark.multiprocess
@pytest.mark.parametrize(("clipping", "cap"), BUCKETED)
def test_a_rank_whose_step_fails_makes_every_rank_raise_without_updating(clipping: str, cap: float | None) -> None:
    args = (clipping, cap)
    first, last = _values(run_ranks(S.one_rank_fails_in_step, WORLD, args, timeout=60.0, pg_timeout=600.0))
    assert last["error"].startswith("PrivacyViolationError: Parameter '3.bias' requires a gradient")
    assert last["unchanged"]
    assert first["error"].startswith("DistributedTrainingError: Data-parallel DP-SGD: 1 of the 2 ranks failed")
    assert first["unchanged"]


@pytest.mark.multiprocess
def test_a_nan_example_on_one_rank_is_refused_on_every_rank_and_the_next_step_is_taken_together() -> None:
    first, last = _values(run_ranks(S.one_rank_has_a_nan_example, WORLD, ("per_layer", S.TINY_BUCKETS), timeout=60.0))
    for out in (first, last):
        assert out["error"] == "NonFiniteGradientError" and out["unchanged"] and out["refused_steps"] == 0
        assert out["steps"] == 1 and torch.isfinite(out["weight"]).all()
    assert torch.equal(first["weight"], last["weight"])


@pytest.mark.multiprocess
@pytest.mark.parametrize(("clipping", "cap"), BUCKETED)
def test_a_failure_before_the_last_chunk_keeps_the_ranks_collectives_paired(clipping: str, cap: float | None) -> None:
    args = (clipping, cap)
    first, last = _values(
        run_ranks(S.fails_mid_logical_batch_then_continues, WORLD, args, timeout=90.0, pg_timeout=60.0)
    )
    assert last["failed_on_closing"] is False  # the failure was on a chunk before the last
    assert last["errors"] == ["PrivacyViolationError"] and first["errors"] == ["DistributedTrainingError"]
    assert first["closed"] == last["closed"] == 3 and first["steps"] == last["steps"] == 2
    assert torch.equal(first["weight"], last["weight"])


@pytest.mark.multiprocess
@pytest.mark.parametrize(("clipping", "cap"), BUCKETED)
def test_a_rank_that_dies_ends_the_others_with_an_error_not_a_hang(clipping: str, cap: float | None) -> None:
    outcomes = run_ranks(S.rank_dies_before_step, WORLD, (clipping, cap), timeout=60.0, pg_timeout=600.0)
    assert outcomes[-1].exit_code == 3
    assert outcomes[0].error_type == "DistributedTrainingError", outcomes[0]
    assert "clipped gradients" in (outcomes[0].error or "") and "on rank 0 of 2" in (outcomes[0].error or "")


@pytest.mark.multiprocess
def test_settings_that_cannot_be_data_parallel_are_refused() -> None:
    msgs = _values(run_ranks(S.refusals, WORLD))[0]
    assert "'poisson_sampling' parameter of make_private must be True with a DistributedDataParallel" in msgs[0]
    assert "divided by the 2 ranks (32)" in msgs[1]
    assert "built without static_graph=True" in msgs[2]


@pytest.mark.multiprocess
def test_ranks_holding_the_dataset_in_different_orders_are_refused() -> None:
    for o in run_ranks(S.rank_ordered_dataset, WORLD):
        assert o.error_type == "InvalidParameterError" and "disagree on dataset: rank 0 has" in (o.error or "")


def test_dataset_fingerprint_sees_order_and_content() -> None:
    x, y = S.toy_data()
    fp = distributed.dataset_fingerprint
    assert fp(TensorDataset(x, y)) == fp(TensorDataset(x.clone(), y.clone()))
    assert fp(TensorDataset(x.flip(0), y.flip(0))) != fp(TensorDataset(x, y))
    x2 = x.clone()
    x2[-1, 0] += 1.0
    assert fp(TensorDataset(x2, y)) != fp(TensorDataset(x, y))


def test_nn_data_parallel_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match=r"must not be an nn\.DataParallel"):
        distributed.unwrap(nn.DataParallel(nn.Linear(2, 2)), "make_private")
    m = nn.Linear(2, 2)
    assert distributed.unwrap(m, "make_private") == (m, None)


def test_shards_partition_the_dataset_and_keep_each_unit_on_one_rank() -> None:
    n, w = 103, 3
    shards = [distributed.shard_indices(n, r, w) for r in range(w)]
    assert sorted(torch.cat(shards).tolist()) == list(range(n))
    units = torch.randint(0, 17, (n,), generator=torch.Generator().manual_seed(0))
    ushards = [distributed.shard_indices(n, r, w, units) for r in range(w)]
    assert sorted(torch.cat(ushards).tolist()) == list(range(n))
    owner = {}
    for r, s in enumerate(ushards):
        for u in units[s].tolist():
            assert owner.setdefault(u, r) == r


def test_sharded_poisson_includes_every_example_at_rate_q() -> None:
    """Positive control: the W shard samplers together include each example w.p. q; negative: q/2 rejected."""
    n, w, q, steps = 60, 3, 0.2, 3000

    def counts(rate: float) -> torch.Tensor:
        c = torch.zeros(n)
        for r in range(w):
            shard = distributed.shard_indices(n, r, w)
            gen = torch.Generator().manual_seed(distributed.rank_seed(1, r, "sampling"))
            for batch in ShardSampler(PoissonSampler(len(shard), rate, steps, gen), shard):
                c[batch] += 1
        return c

    def rejected(c: torch.Tensor) -> bool:
        p = [stats.binomtest(int(k), steps, q).pvalue for k in c]
        return min(p) < 1e-3 / n

    assert not rejected(counts(q))
    assert rejected(counts(q / 2))


def test_rank_seeds_differ_across_ranks_and_streams_and_repeat_for_a_seed() -> None:
    seeds = [distributed.rank_seed(42, r, "noise") for r in range(8)]
    assert len(set(seeds)) == 8 and seeds == [distributed.rank_seed(42, r, "noise") for r in range(8)]
    assert distributed.rank_seed(43, 0, "noise") != seeds[0] != distributed.rank_seed(42, 0, "sampling")


@pytest.mark.parametrize("n", [0, 1, 5, 1000, 1001])
@pytest.mark.parametrize("w", [1, 2, 3, 7])
def test_noise_slices_cover_every_coordinate_once(n: int, w: int) -> None:
    bounds = [allreduce.slice_bounds(n, r, w) for r in range(w)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1


def test_a_sharded_unit_sampler_reports_the_dataset_units_of_each_chunk() -> None:
    """per_unit='all' clips by unit: the loader must hand the optimizer the global unit codes."""
    unit_of = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4, 5])
    shard = distributed.shard_indices(10, 1, 2, unit_of)  # units 1, 3, 5
    local = UnitPoissonSampler(unit_of[shard], 1.0, 2, torch.Generator().manual_seed(0), per_unit="all")
    loader = PrivateDataLoader(torch.arange(10).float().unsqueeze(1), ShardSampler(local, shard, unit_of))
    groups = []
    loader.on_groups = groups.append
    batches = [b for b in loader]
    assert [g.tolist() for g in groups] == [[1, 3, 5], [1, 3, 5]]
    assert batches[0].flatten().tolist() == [2.0, 6.0, 9.0]
    assert math.isclose(loader.sample_rate, 1.0)


def test_buckets_follow_reverse_parameter_order_and_the_cap() -> None:
    params = {n: torch.zeros(k) for n, k in (("a", 4), ("b", 2), ("c", 3), ("d", 1))}  # 16, 8, 12, 4 bytes
    assert allreduce.buckets(params, math.inf) == [["d", "c", "b", "a"]]
    assert allreduce.buckets(params, 16) == [["d", "c"], ["b", "a"]]
    assert allreduce.buckets(params, 1) == [["d"], ["c"], ["b"], ["a"]]
