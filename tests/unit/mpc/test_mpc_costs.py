"""Exact traffic of one ReLU, one DReLU and one multiplication, from formulas derived by hand
(docs/mpc.md, "Bytes per ReLU and per multiplication"): a change that sends more fails here."""

from __future__ import annotations

import pytest
import torch

from privlab.mpc.config import MPCConfig
from privlab.mpc.dealer.core import encode_request
from privlab.mpc.protocols import arith, compare

CFG = MPCConfig(range_checks=False, cmp_tree=(2, 2, 2))  # the protocols' own cost (checks add theirs at the reveal)


def _ceil8(bits: int) -> int:
    return -(-bits // 8)


def _request(kind: str, **params: object) -> int:
    """A request on the wire: its JSON and the 8-byte length header."""
    return len(encode_request(kind, params)) + 8


def _cmp_party_bytes(n: int) -> int:
    """Both parties: the opening of ``c`` (8 bytes each way), the AND tree (per level ``p`` nodes:
    ``3p - 1`` bits each way, node 0 needing one AND), the bit ``e`` (1 bit each way)."""
    per_party = 8 * n + sum(_ceil8((3 * p - 1) * n) for p in (4, 2, 1)) + _ceil8(n)
    return 2 * per_party


def _cmp_dealer_bytes(n: int, relu: bool) -> int:
    """Party 1's corrections: tables (7 digits of 5 bits, a top digit of 4, each without its
    always-0 last entry: 7 * 31 + 15 = 232 bits), ``r_39``, the AND tree's mask products (per level
    of ``p`` nodes ``2p - 1`` bits: node 0 needs one), ``[t]`` and (ReLU) ``[r t]``."""
    bits = _ceil8(232 * n) + _ceil8(n)
    bits += sum(_ceil8((2 * p - 1) * n) for p in (4, 2, 1))  # one field of mask products per level
    ring = 8 * n * (2 if relu else 1)
    return bits + ring + _request("cmp", shape=[n], bits=40, tree=[2, 2, 2], relu=relu)


@pytest.mark.parametrize("n", [1000, 333])
def test_relu_and_drelu_traffic_is_the_formula(shared_eval, rand, n) -> None:  # type: ignore[no-untyped-def]
    x = rand((n,), 50.0, n)
    out, res = shared_eval(compare.relu, x, config=CFG)
    assert torch.allclose(out, x.relu(), atol=2.0**-16, rtol=0)
    op = res.stats.per_op["op"]
    assert op.rounds == 5
    assert op.bytes == _cmp_party_bytes(n)
    assert op.dealer_bytes == _cmp_dealer_bytes(n, relu=True)
    _, res = shared_eval(compare.drelu, x, decoded=False, config=CFG)
    op = res.stats.per_op["op"]
    assert (op.rounds, op.bytes) == (5, _cmp_party_bytes(n))
    assert op.dealer_bytes == _cmp_dealer_bytes(n, relu=False)  # no [r t]: 8 bytes less


def test_relu_per_element_against_the_previous_layout(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    n = 4096
    _, res = shared_eval(compare.relu, rand((n,), 10.0, 1), config=CFG)
    op = res.stats.per_op["op"]
    assert op.bytes / n == pytest.approx(20.75, abs=0.01)  # was 21.5 (21 AND bits each way, now 18)
    assert op.dealer_bytes / n == pytest.approx(46.5, abs=0.05)  # was 49.9 (256 table bits, 14 AND bits)


@pytest.mark.parametrize("n", [1000, 333])
def test_relu_traffic_with_the_default_tree_is_the_formula(shared_eval, rand, n) -> None:  # type: ignore[no-untyped-def]
    """``cmp_tree = (2, 2, 3)`` (the default): 12 digits (three of 4 bits, nine of 3: tables of
    ``3 * 15 + 9 * 7 = 108`` bits), levels of 6, 3 and 1 nodes. Party bits each way per level:
    ``6 * 3 - 1``, ``3 * 3 - 1`` and ``5 - 1`` (a fan-in-3 node opens 5 masked bits, the lowest 4);
    the dealer's mask products ``1 + 5 * 2``, ``1 + 2 * 2`` and 5."""
    cfg = MPCConfig(range_checks=False)
    assert cfg.cmp_tree == (2, 2, 3)
    x = rand((n,), 50.0, n)
    out, res = shared_eval(compare.relu, x, config=cfg)
    assert torch.allclose(out, x.relu(), atol=2.0**-16, rtol=0)
    op = res.stats.per_op["op"]
    party = 8 * n + sum(_ceil8(b * n) for b in (17, 8, 4)) + _ceil8(n)
    dealer = _ceil8(108 * n) + _ceil8(n) + sum(_ceil8(b * n) for b in (11, 5, 5)) + 16 * n
    assert (op.rounds, op.bytes) == (5, 2 * party)
    assert op.dealer_bytes == dealer + _request("cmp", shape=[n], bits=40, tree=[2, 2, 3], relu=True)
    if n == 1000:  # per element: 23.5 between the parties, 32.25 from the dealer (20.75 / 46.5 at (2, 2, 2))
        assert op.bytes / n == pytest.approx(23.5, abs=0.01)
        assert op.dealer_bytes / n == pytest.approx(32.25, abs=0.1)


@pytest.mark.parametrize("n", [1000, 77])
def test_mul_traffic_is_the_formula(shared_eval, rand, n) -> None:  # type: ignore[no-untyped-def]
    x, y = rand((n,), 3.0, 1), rand((n,), 3.0, 2)
    out, res = shared_eval(arith.mul, x, y, config=CFG)
    assert torch.allclose(out, x * y, atol=1e-3)
    op = res.stats.per_op["op"]
    assert op.rounds == 2
    assert op.bytes == 2 * (16 * n + 8 * n)  # Beaver: e and f each way; truncation: c each way
    # One request: the triple's c carries the truncation mask, v is random (free), k and w travel
    # as 16 bits each: 12 n (was 8 n for the triple + 10 n for a separate truncation pair).
    fused = 8 * n + 2 * n + 2 * n + _request("triple", op="mul", a_shape=[n], b_shape=[n], kw={}, f=16)
    assert op.dealer_bytes == fused


def test_owned_product_traffic_is_the_formula(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    """A layer's product with party 0's weight, truncated: 16 |x| + 8 |w| + 16 |out| between the
    parties, (8 + 4) |out| from the dealer, 2 rounds."""
    n, k, o = 6, 10, 4
    x, w = rand((n, k), 3.0, 1), rand((k, o), 0.5, 2)

    def layer(p, xs):  # type: ignore[no-untyped-def]
        from privlab.mpc.encoding import encode

        wt = encode(w, p.f) if p.rank == 0 else None
        return arith.beaver_owned(p, "matmul", xs, wt, (k, o), f=p.f)

    out, res = shared_eval(layer, x, config=CFG)
    assert torch.allclose(out, x @ w, atol=1e-3)
    op = res.stats.per_op["op"]
    assert op.rounds == 2
    assert op.bytes == 16 * n * k + 8 * k * o + 16 * n * o
    req = _request("owned_triple", op="matmul", a_shape=[n, k], b_shape=[k, o], kw={}, f=16)
    assert op.dealer_bytes == 12 * n * o + req


def test_trunc_with_an_odd_width_packs_bits(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    n = 100
    x = rand((n,), 1000.0, 4)
    cfg = MPCConfig(frac_bits=13, range_checks=False)
    out, res = shared_eval(lambda p, a: arith.trunc(p, a * 8), x, config=cfg)  # x * 8 / 2^13
    assert torch.allclose(out, x * 8 / 2**13, atol=2.0**-12)
    op = res.stats.per_op["op"]
    assert op.dealer_bytes == 8 * n + _ceil8(13 * n) + _request("trunc", shape=[n], f=13)
