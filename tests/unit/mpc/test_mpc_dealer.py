"""Contract test over every kind of dealer material: reconstructed shares satisfy the relation,
party 0 never talks to the dealer, and party 1's dealer traffic is the derived fields only."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from privlab.errors import InvalidParameterError
from privlab.mpc.cmp_tree import node_products
from privlab.mpc.dealer.core import DealerCore, LocalLink, Provider, encode_request
from privlab.mpc.dealer.material import MATERIALS, make_spec
from privlab.mpc.stats import CommCounter

KINDS: list[tuple[str, dict[str, Any]]] = [
    ("triple", {"op": "mul", "a_shape": [3, 4], "b_shape": [4]}),
    ("triple", {"op": "matmul", "a_shape": [2, 3, 5], "b_shape": [5, 6]}),
    ("triple", {"op": "conv2d", "a_shape": [2, 3, 7, 7], "b_shape": [4, 3, 3, 3],
                "kw": {"stride": [2, 2], "padding": [1, 1], "dilation": [1, 1], "groups": 1}}),
    ("owned_triple", {"op": "matmul", "a_shape": [4, 5], "b_shape": [5, 2]}),
    ("trunc", {"shape": [50], "f": 16}),
    ("div", {"shape": [50], "d": 7}),
    ("cmp", {"shape": [7], "bits": 40, "tree": [2, 2, 2]}),
    ("cmp", {"shape": [7], "bits": 40, "tree": [2, 2, 3]}),
    ("cmp", {"shape": [5], "bits": 33, "tree": [4, 3]}),
    ("cmp", {"shape": [3], "bits": 62, "tree": [2, 2, 2], "relu": False}),
]


def _both(kind: str, params: dict[str, Any]) -> tuple[dict, dict, CommCounter, CommCounter]:  # type: ignore[type-arg]
    core = DealerCore(11, 22)
    c0, c1 = CommCounter(), CommCounter()
    p0 = Provider(0, 11, None, c0)
    p1 = Provider(1, 22, LocalLink(core), c1)
    return p0.get(kind, params), p1.get(kind, params), c0, c1


def _arith(m0: dict, m1: dict, k: str) -> torch.Tensor:  # type: ignore[type-arg]
    return m0[k] + m1[k] if k in m1 else m0[k]


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_material_relations_and_dealer_traffic(kind: str, params: dict[str, Any]) -> None:
    m0, m1, c0, c1 = _both(kind, params)
    if kind in ("triple", "owned_triple"):
        a, b, c = _arith(m0, m1, "a"), _arith(m0, m1, "b"), _arith(m0, m1, "c")
        if kind == "owned_triple":
            assert "b" not in m1  # party 1 never holds a share of the owner's mask
        op = {"mul": torch.mul, "matmul": torch.matmul,
              "conv2d": lambda u, v: F.conv2d(u, v, **params["kw"])}[params["op"]]
        assert torch.equal(op(a, b), c)
    elif kind == "trunc":
        r, v, w = _arith(m0, m1, "r"), _arith(m0, m1, "v"), _arith(m0, m1, "w")
        for ri, vi, wi in zip(r.tolist(), v.tolist(), w.tolist(), strict=True):  # naive reference
            unsigned = ri % 2**64
            u, m = (unsigned % 2**63) >> 16, unsigned >> 63
            assert vi % 2**64 == (m * 2**47 - u) % 2**64 and wi % 2**64 == m * 2**48
        assert torch.equal(m1["w"] % 2**48, torch.zeros_like(m1["w"]))  # party 1's correction: top 16 bits
    elif kind == "div":
        r, u, m = _arith(m0, m1, "r"), _arith(m0, m1, "u"), _arith(m0, m1, "m")
        for ri, ui, mi in zip(r.tolist(), u.tolist(), m.tolist(), strict=True):
            unsigned = ri % 2**64
            assert ui == (unsigned % 2**63) // 7 and mi == unsigned >> 63
    else:
        bits, tree, relu = params["bits"], params["tree"], params.get("relu", True)
        r, t = _arith(m0, m1, "r"), m0["t"] ^ m1["t"]
        tab = m0["tab"] ^ m1["tab"]
        digits = math.prod(tree)
        w, e = divmod(bits - 1, digits)
        widths = [w + 1] * e + [w] * (digits - e)  # as even as possible, the wider digits lowest
        assert tab.shape[-1] == sum(2**w - 1 for w in widths)  # short top digit, no always-0 last entry
        for i, ri in enumerate(r.tolist()):
            low = (ri % 2**64) % 2 ** (bits - 1)
            pos = shift = 0
            for w in widths:
                digit = (low >> shift) & (2**w - 1)
                assert tab[i, pos : pos + 2**w - 1].tolist() == [int(v < digit) for v in range(2**w - 1)]
                pos, shift = pos + 2**w - 1, shift + w
            assert int(m0["rtop"][i] ^ m1["rtop"][i]) == ((ri % 2**64) >> (bits - 1)) & 1
        assert ("rt" in m1) == relu  # DReLU does not fetch r t
        if relu:
            assert torch.equal(_arith(m0, m1, "rt"), r * t.long())
        assert torch.equal(_arith(m0, m1, "ta"), t.long())
        nodes = digits
        for j, k in enumerate(tree):  # q{j}: products of the masks d{j}, node 0 without eq_0's
            nodes //= k
            d = (m0[f"d{j}"] ^ m1[f"d{j}"]).tolist()
            q = (m0[f"q{j}"] ^ m1[f"q{j}"]).tolist()
            want_low, want_full = node_products(k, False), node_products(k, True)
            assert 2 * k - 2 not in {v for sub in want_low for v in sub}  # eq_0 of node 0 is never used
            for i in range(len(d)):
                expect = [int(all(d[i][0][v] for v in sub)) for sub in want_low]
                for node in range(1, nodes):
                    expect += [int(all(d[i][node][v] for v in sub)) for sub in want_full]
                assert q[i] == expect
    spec = make_spec(kind, params)
    assert c0.dealer_bytes == 0 and c0.dealer_requests == 0  # party 0 derives all from its seed
    derived = sum(f.nbytes() for f in spec.derived)
    assert c1.dealer_bytes == len(encode_request(kind, params)) + 8 + derived


def test_every_registered_kind_is_covered() -> None:
    assert {k for k, _ in KINDS} == set(MATERIALS)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="'kind' parameter of make_spec"):
        make_spec("nope", {})


def test_a_triple_is_fresh_each_time() -> None:
    core = DealerCore(1, 2)
    p1 = Provider(1, 2, LocalLink(core), CommCounter())
    params = {"op": "mul", "a_shape": [8], "b_shape": [8]}
    assert not torch.equal(p1.get("triple", params)["a"], p1.get("triple", params)["a"])


def _chi2_byte(v: torch.Tensor) -> float:
    counts = torch.bincount(v.long(), minlength=256).double()
    expected = v.numel() / 256
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("seed", [3, 4])
def test_compressed_corrections_are_uniform(seed: int) -> None:
    """Party 1's 16-bit correction of ``w = m 2^48`` is uniform over its 2^16 values (both bytes),
    although ``w`` itself takes two values: what travels says nothing about ``r``. Negative
    control: without party 0's uniform share the correction would be ``w``, far from uniform."""
    n = 40_000
    core = DealerCore(seed, seed + 100)
    p1 = Provider(1, seed + 100, LocalLink(core), CommCounter())
    params = {"shape": [n], "f": 16}
    m1 = p1.get("trunc", params)
    top = torch.bitwise_right_shift(m1["w"], 48)  # the 16 bits that travelled
    lo, hi = torch.bitwise_and(top, 255), torch.bitwise_and(torch.bitwise_right_shift(top, 8), 255)
    limit = 330.0  # 99.9% quantile of chi-square with 255 degrees of freedom
    assert _chi2_byte(lo) < limit and _chi2_byte(hi) < limit
    m0 = Provider(0, seed, None, CommCounter()).get("trunc", params)
    w = torch.bitwise_right_shift(m0["w"] + m1["w"], 48)  # the value itself: 0 or 1
    assert _chi2_byte(torch.bitwise_and(w, 255)) > 100 * limit
