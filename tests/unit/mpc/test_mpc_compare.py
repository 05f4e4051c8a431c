"""Comparison, ReLU, max, argmax and pooling against plaintext torch; their measured cost."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privlab.errors import MPCRangeError
from privlab.mpc.cmp_tree import node_terms
from privlab.mpc.config import MPCConfig
from privlab.mpc.encoding import encode
from privlab.mpc.protocols import compare

SET = settings(max_examples=8, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
RANGE = 2.0 ** (40 - 1 - 16)  # |x| < 2^23 with the default cmp_bits=40, f=16


@given(st.integers(1, 300), st.floats(1e-4, RANGE / 4), st.integers(0, 2**31))
@SET
def test_drelu_and_relu_are_exact(shared_eval, rand, n, scale, seed) -> None:  # type: ignore[no-untyped-def]
    x = rand((n,), scale, seed).clamp(-RANGE, RANGE - 1)  # the documented range
    x[0] = 0.0  # the boundary: [0 >= 0] = 1
    bit, _ = shared_eval(compare.drelu, x, decoded=False)
    assert torch.equal(bit, (encode(x, 16) >= 0).long())  # the sign of the fixed-point value
    out, _ = shared_eval(compare.relu, x)
    assert torch.allclose(out, x.relu(), atol=2.0**-16, rtol=0)


def test_extreme_values_inside_the_range(shared_eval) -> None:  # type: ignore[no-untyped-def]
    ulp = 2.0**-16
    x = torch.tensor([ulp, -ulp, RANGE - 1, -RANGE, 0.0, -0.0], dtype=torch.float64)
    bit, _ = shared_eval(compare.drelu, x, decoded=False)
    assert bit.tolist() == [1, 0, 1, 0, 1, 1]


@pytest.mark.parametrize(
    ("bits", "tree"), [(40, (2, 2, 2)), (40, (2, 2, 3)), (40, (3, 4)), (64, (2, 2, 2, 2)), (33, (2, 2)), (33, (4,))]
)
def test_relu_rounds_and_bytes_per_element(shared_eval, rand, bits, tree) -> None:  # type: ignore[no-untyped-def]
    n = 1000
    x = rand((n,), 100.0, 5)
    cfg = MPCConfig(cmp_bits=bits, cmp_tree=tree)
    out, res = shared_eval(compare.relu, x, config=cfg)
    assert torch.allclose(out, x.relu(), atol=2.0**-16)
    op = res.stats.per_op["op"]
    assert op.rounds == 2 + len(tree)  # CrypTen: 8-9 rounds per ReLU
    nodes, opened = math.prod(tree), 0
    for k in tree:  # a fan-in-k node opens 2k - 1 masked bits each way, the lowest 2k - 2
        nodes //= k
        opened += nodes * (2 * k - 1) - 1
    expected = n * (16 + (2 * opened + 2) / 8)  # opening + AND tree + final bit, both parties
    assert abs(op.bytes - expected) <= 16 * len(tree)  # byte padding of the packed bits
    assert op.bytes / n < 464 / 10  # CrypTen: ~464 bytes per element


@given(st.integers(1, 4), st.integers(1, 9), st.integers(0, 99))
@SET
def test_max_and_argmax_last_dim(shared_eval, rand, rows, n, seed) -> None:  # type: ignore[no-untyped-def]
    x = rand((rows, n), 10.0, seed)
    out, res = shared_eval(compare.max_last, x)
    assert torch.allclose(out, x.max(-1).values, atol=2.0**-16)
    onehot, _ = shared_eval(compare.argmax_last, x, decoded=False)
    assert torch.equal(onehot, F.one_hot(x.argmax(-1), n))


@given(st.integers(1, 3), st.sampled_from([2, 3]), st.integers(0, 99))
@SET
def test_max_pool2d(shared_eval, rand, c, k, seed) -> None:  # type: ignore[no-untyped-def]
    x = rand((2, c, 6, 6), 5.0, seed)
    out, _ = shared_eval(lambda p, a: compare.max_pool2d(p, a, k), x)
    assert torch.allclose(out, F.max_pool2d(x, k), atol=2.0**-16)


def test_sign_and_ge(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    x, y = rand((50,), 3.0, 1), rand((50,), 3.0, 2)
    s, _ = shared_eval(compare.sign, x, decoded=False)
    assert torch.equal(s, torch.where(x >= 0, 1, -1))
    g, _ = shared_eval(compare.ge, x, y, decoded=False)
    assert torch.equal(g, (encode(x, 16) >= encode(y, 16)).long())


def test_out_of_range_input_fails_as_documented(shared_eval) -> None:  # type: ignore[no-untyped-def]
    """Negative control: beyond 2^(cmp_bits-1) the comparison is no longer correct (with the
    range checks off), and the range check refuses to reveal it (on, the default)."""
    x = torch.full((200,), 3 * RANGE, dtype=torch.float64)  # x + 2^(l-1) = 2^(l+1): bit l-1 is 0
    bit, _ = shared_eval(compare.drelu, x, decoded=False, config=MPCConfig(range_checks=False))
    assert bit.sum() == 0  # every positive input reported negative
    with pytest.raises(MPCRangeError, match=r"privlab\.mpc\.drelu: 200 of 200 input values lie outside"):
        shared_eval(compare.drelu, x, decoded=False)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_node_terms_compare_multi_digit_numbers(k: int) -> None:
    """Plaintext check of one tree node: for all pairs of k-digit numbers in base 4, the node's
    polynomials on the per-digit (lt, eq) give [a < b] and [a == b]."""
    lt_terms, eq_term = node_terms(k)
    for a, b in itertools.product(range(4**k), repeat=2):
        da, db = [(a >> (2 * i)) & 3 for i in range(k)], [(b >> (2 * i)) & 3 for i in range(k)]
        lt = [int(x < y) for x, y in zip(da, db, strict=True)]
        eq = [int(x == y) for x, y in zip(da, db, strict=True)]
        var = lt[: k - 1] + eq[1:] + eq[:1]  # the node's variable order
        got_lt = lt[k - 1]
        for term in lt_terms:
            got_lt ^= int(all(var[v] for v in term))
        assert (got_lt, int(all(var[v] for v in eq_term))) == (int(a < b), int(a == b))


@pytest.mark.parametrize("tree", [(2, 2, 2), (2, 2, 3), (3, 4), (4, 3), (3, 3), (4,)])
def test_drelu_is_exact_for_every_tree(shared_eval, tree) -> None:  # type: ignore[no-untyped-def]
    """Log-uniform magnitudes over the whole range, both signs, and the edges: every digit
    position decides some comparisons, and runs of equal digits (eq chains) occur."""
    g = torch.Generator().manual_seed(sum(tree))
    mag = torch.exp2(torch.rand(4000, generator=g, dtype=torch.float64) * 39 - 16).clamp(max=RANGE - 2.0**-16)
    edges = torch.tensor([2.0**-16, -(2.0**-16), RANGE - 2.0**-16, 2.0**-16 - RANGE, 0.0], dtype=torch.float64)
    x = torch.cat([mag, -mag, edges])
    x = torch.round(x * 2**16) / 2**16
    bit, _ = shared_eval(compare.drelu, x, decoded=False, config=MPCConfig(cmp_tree=tree))
    assert bit.tolist() == (x >= 0).long().tolist()
    unchecked = MPCConfig(cmp_tree=tree, range_checks=False)
    ctl, _ = shared_eval(compare.drelu, x + 2 * RANGE, decoded=False, config=unchecked)
    assert ctl.tolist() != (x + 2 * RANGE >= 0).long().tolist()  # negative control: outside the range it wraps


@pytest.mark.parametrize("bits", [18, 20])
def test_relu_with_one_bit_digits(shared_eval, bits) -> None:  # type: ignore[no-untyped-def]
    """A narrow width splits ``bits - 1`` bits into 12 digits, some of one bit (tables of one entry)."""
    limit = 2.0 ** (bits - 17)
    g = torch.Generator().manual_seed(bits)
    x = torch.round((torch.rand(3000, generator=g, dtype=torch.float64) * 2 - 1) * limit * 0.999 * 2**16) / 2**16
    out, _ = shared_eval(compare.relu, x, config=MPCConfig(cmp_bits=bits))
    assert torch.equal(out, x.relu())
