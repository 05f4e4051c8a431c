"""Encoding, sharing, revealing, PRG bit packing, and the shares' statistical independence."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from privlab.errors import InvalidParameterError
from privlab.mpc.config import MPCConfig
from privlab.mpc.encoding import decode, encode
from privlab.mpc.launch import run_local
from privlab.mpc.prg import PRG, pack_bits, unpack_bits
from privlab.mpc.sharing import reveal, share, zero_share


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20), st.integers(8, 24))
@settings(max_examples=20, deadline=None)
def test_encode_decode_round_trip(values: list[float], f: int) -> None:
    x = torch.tensor(values, dtype=torch.float64)
    assert torch.allclose(decode(encode(x, f), f), x, atol=2.0 ** -(f + 1) + 1e-12, rtol=0)


def test_ring_wraps_like_z_mod_2_64() -> None:
    a = torch.tensor([2**62, -(2**63)], dtype=torch.int64)
    assert (a + a).tolist() == [-(2**63), 0]  # naive reference: (x + y) mod 2^64, signed


@given(st.integers(1, 300))
@settings(max_examples=15, deadline=None)
def test_pack_bits_round_trip(n: int) -> None:
    b = PRG(n).bits((n,))
    assert torch.equal(unpack_bits(pack_bits(b), (n,)), b)
    assert set(b.unique().tolist()) <= {0, 1}


def test_same_seed_same_stream_different_seed_different() -> None:
    assert torch.equal(PRG(5).ring((10,)), PRG(5).ring((10,)))
    assert not torch.equal(PRG(5).ring((10,)), PRG(6).ring((10,)))


@given(st.integers(0, 1), st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=30))
@settings(max_examples=10, deadline=None)
def test_share_then_reveal_to_all(src: int, values: list[float]) -> None:
    x = torch.tensor(values, dtype=torch.float64)

    def task(party, x):  # type: ignore[no-untyped-def]
        s = share(party, src, x if party.rank == src else None, x.shape)
        return reveal(party, s), reveal(party, zero_share(party, x.shape))

    res = run_local(task, ((x,), (x,)))
    for out, zero in res.outputs:
        assert torch.allclose(out, x, atol=2.0**-16)
        assert torch.equal(zero, torch.zeros_like(zero))
    assert res.stats.per_op["other"].rounds == 2  # sharing costs no round, each reveal one


def test_reveal_to_one_party_only() -> None:
    x = torch.arange(5, dtype=torch.float64)

    def task(party):  # type: ignore[no-untyped-def]
        return reveal(party, share(party, 0, x if party.rank == 0 else None, x.shape), to=1)

    res = run_local(task, ((), ()))
    assert res.outputs[0] is None
    assert torch.allclose(res.outputs[1], x)
    assert res.stats.bytes == 5 * 8  # one direction only


def test_share_rejects_wrong_shape_and_source() -> None:
    def task(party):  # type: ignore[no-untyped-def]
        return share(party, 0, torch.zeros(3) if party.rank == 0 else None, (4,))

    with pytest.raises(InvalidParameterError, match="'x' parameter of share"):
        run_local(task, ((), ()), MPCConfig(timeout=2.0))
    with pytest.raises(InvalidParameterError, match="'src' parameter of share"):
        run_local(lambda p: share(p, 2, None, (1,)), ((), ()), MPCConfig(timeout=2.0))


def test_config_validation_message() -> None:
    for tree in ((2, 5), (), (2, 1), [2, 2], (4, 4, 4)):  # a fan-in > 4 or < 2, empty, a list, 64 > 39 digits
        with pytest.raises(InvalidParameterError, match="'cmp_tree' parameter of MPCConfig"):
            MPCConfig(cmp_tree=tree)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'frac_bits' parameter of MPCConfig"):
        MPCConfig(frac_bits=0)


def _share_bytes(values: torch.Tensor, rank: int) -> torch.Tensor:
    def task(party, x):  # type: ignore[no-untyped-def]
        return share(party, 0, x if party.rank == 0 else None, x.shape, encoded=True)

    res = run_local(task, ((values,), (values,)))
    return res.outputs[rank]


@pytest.mark.parametrize("rank", [0, 1])
def test_shares_look_uniform_whatever_the_secret(rank: int) -> None:
    """A share of 0 and a share of 2^40 + i have the same distribution (top byte uniform).

    Negative control: the *secret* itself (not a share) fails the same test. Chi-square with
    255 degrees of freedom; 99.9% quantile ~ 330; checked on seeds 0-19.
    """
    n = 40_000

    def chi2(t: torch.Tensor) -> float:
        top = torch.bitwise_and(torch.bitwise_right_shift(t, 56), 255)
        counts = torch.bincount(top, minlength=256).double()
        return float(((counts - n / 256) ** 2 / (n / 256)).sum())

    zeros = torch.zeros(n, dtype=torch.int64)
    large = (2**40 + torch.arange(n)).to(torch.int64)
    assert chi2(_share_bytes(zeros, rank)) < 330
    assert chi2(_share_bytes(large, rank)) < 330
    assert chi2(large) > 330  # negative control: unshared data is far from uniform


def test_shared_eval_helper_counts_only_the_op(shared_eval) -> None:  # type: ignore[no-untyped-def]
    x = torch.ones(4, dtype=torch.float64)
    out, res = shared_eval(lambda p, a: a + a, x)
    assert torch.allclose(out, 2 * x)
    assert "op" not in res.stats.per_op  # addition is local: no traffic at all


def test_per_operation_stats_name_the_outermost_protocol() -> None:
    from privlab.mpc.protocols import compare, nonlinear

    def task(party):  # type: ignore[no-untyped-def]
        x = share(party, 0, torch.ones(8) if party.rank == 0 else None, (8,))
        compare.relu(party, x)
        nonlinear.sigmoid(party, x)  # calls drelu, exp, reciprocal inside: all charged to it
        with party.counter.scope("layer1"):
            compare.relu(party, x)

    res = run_local(task, ((), ()))
    per = res.stats.per_op
    assert set(per) == {"relu", "sigmoid", "layer1"}
    assert per["relu"].rounds == per["layer1"].rounds == 5
    assert per["relu"].bytes == per["layer1"].bytes
    assert sum(o.rounds for o in per.values()) == res.stats.rounds
    assert sum(o.bytes for o in per.values()) == res.stats.bytes
    assert sum(o.dealer_bytes for o in per.values()) == res.stats.dealer_bytes
