"""The per-op table of docs/mpc.md ("Valid ranges and errors"), checked row by row: values drawn
inside each range come back within the stated error; a value just outside makes the run raise
``MPCRangeError`` naming the op and its range (``MPCConfig.range_checks``, on by default)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privlab.errors import MPCRangeError
from privlab.mpc.protocols import arith, compare
from privlab.mpc.protocols import nonlinear as nl

SET = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ULP = 2.0**-16
CMP = 2.0**23  # 2^(cmp_bits - 1 - frac_bits) with the defaults
T = torch.Tensor


def _q(x: T) -> T:
    return torch.round(x * 2**16) / 2**16  # the fixed-point value the parties hold


@dataclass(frozen=True)
class Row:
    """One table row: the op, its valid interval, how far from it "just outside" lies, the error."""

    name: str
    fn: Callable[..., T]
    lo: float
    hi: float
    ref: Callable[[T], T]
    err: Callable[[T, T], T]  # allowed |out - ref| given the (quantised) input and the reference
    log: bool = False


ROWS = [
    Row("relu", compare.relu, -CMP, CMP - ULP, torch.relu, lambda x, r: torch.full_like(x, ULP)),
    Row("sigmoid", nl.sigmoid, -CMP, CMP - ULP, torch.sigmoid, lambda x, r: torch.full_like(x, 2e-3)),
    Row("tanh", nl.tanh, -CMP / 2, CMP / 2 - ULP, torch.tanh, lambda x, r: torch.full_like(x, 4e-3)),
    Row("gelu", nl.gelu, -CMP, CMP - ULP, F.gelu, lambda x, r: torch.full_like(x, 1e-3)),
    Row("exp", nl.exp, -256.0, 9.0, torch.exp, lambda x, r: (x.abs() ** 3 / (6 * 4**8) + 5e-4) * r + 1e-4),
    Row("reciprocal", nl.reciprocal, 2.0**-14, 2.0**14, torch.reciprocal, lambda x, r: 1e-4 * r + 3 * ULP, True),
    Row("rsqrt", nl.rsqrt, 2.0**-14, 2.0**14, torch.rsqrt, lambda x, r: 2e-3 * r + 1e-4, True),
    Row("sqrt", nl.sqrt, 2.0**-14, 2.0**14, torch.sqrt, lambda x, r: 1.5 * ULP * x + 2e-3 * r, True),
    Row("log", nl.log, 0.1, 100.0, torch.log, lambda x, r: torch.full_like(x, 1e-2), True),
]


def _inside(row: Row, n: int, seed: int) -> T:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    if row.log:
        x = torch.exp(math.log(row.lo) + u * (math.log(row.hi) - math.log(row.lo)))
    else:
        x = row.lo + u * (row.hi - row.lo)
    x[0], x[-1] = row.lo, row.hi  # both ends belong to the range
    return _q(x)


def _outside(row: Row, side: int, frac: float) -> float:
    """A value ``frac`` (relative, at least 4 ulps) beyond the low (side 0) or high (side 1) end."""
    if side == 1:
        return row.hi + max(abs(row.hi) * frac, 4 * ULP)
    if row.log:  # positive domains: below the low end, down to zero and negative numbers
        return row.lo * (1 - 2 * frac) - 4 * ULP
    return row.lo - max(abs(row.lo) * frac, 4 * ULP)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
@given(st.integers(2, 60), st.integers(0, 999), st.integers(0, 1), st.floats(0.0, 1.0))
@SET
def test_inside_within_error_outside_raises(shared_eval, row, n, seed, side, frac) -> None:  # type: ignore[no-untyped-def]
    x = _inside(row, n, seed)
    out, _ = shared_eval(row.fn, x)
    ref = row.ref(x)
    assert ((out - ref).abs() <= row.err(x, ref)).all(), row.name
    bad = x.clone()
    bad[seed % n] = _outside(row, side, frac)
    with pytest.raises(MPCRangeError, match=rf"privlab\.mpc\.{row.name}: 1 of {n} input values lie outside"):
        shared_eval(row.fn, bad)


@given(st.integers(0, 29), st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.integers(0, 999))
@SET
def test_products_inside_within_error_outside_raise(shared_eval, a, v, frac, seed) -> None:  # type: ignore[no-untyped-def]
    """mul: |x y| <= 2^29 is never flagged (1 ulp + rounding); |x y| >= 2^30 always is."""
    x = _q(torch.tensor([2.0**a, -(2.0 ** (a / 2)), 1.5], dtype=torch.float64))
    y = _q(torch.tensor([2.0 ** (29 - a) * v, 2.0 ** (29 - a / 2) * v, -3.0], dtype=torch.float64))
    out, _ = shared_eval(arith.mul, x, y)
    assert ((out - x * y).abs() <= ULP * (1 + x.abs() + y.abs())).all()
    big = y.clone()
    big[seed % 2] = big[seed % 2] / v * 2 * (1 + frac)  # now |x y| = 2^30 (1 + frac)
    with pytest.raises(MPCRangeError, match=r"privlab\.mpc\.mul: .*2\^30"):
        shared_eval(arith.mul, x, big)


@given(st.integers(8, 64), st.floats(0.0, 1.0), st.integers(0, 999))
@SET
def test_matmul_inside_within_error_outside_raises(shared_eval, rand, k, frac, seed) -> None:  # type: ignore[no-untyped-def]
    """matmul: each output |sum x y| <= 2^29 passes (k ulps of rounding); 2^30 or more raises."""
    s = math.sqrt(2.0**29 / k) / 4  # |entries| <= ~2 s: outputs below 2^29
    x, y = _q(rand((3, k), 1.0, seed).clamp(-2, 2) * s), _q(rand((k, 2), 1.0, seed + 1).clamp(-2, 2) * s)
    out, _ = shared_eval(arith.matmul, x, y)
    assert ((out - x @ y).abs() <= ULP * (1 + k)).all()
    big = torch.full((1, k), math.sqrt(2.0**30 * (1 + frac) / k), dtype=torch.float64)
    with pytest.raises(MPCRangeError, match=r"privlab\.mpc\.matmul"):
        shared_eval(arith.matmul, big, big.t().contiguous())


@given(st.integers(2, 24), st.floats(0.01, 1.0), st.integers(0, 999))
@SET
def test_layer_norm_variance_inside_within_error_outside_raises(shared_eval, rand, d, frac, seed) -> None:  # type: ignore[no-untyped-def]
    """LayerNorm: variance in [1e-2, 0.98 * 2^15] within 2e-2; a larger variance raises."""
    x = rand((4, d), 1.0, seed)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True).clamp(min=1e-6)
    scales = torch.tensor([0.1, 3.0, 60.0, 150.0], dtype=torch.float64).unsqueeze(-1)  # var 1e-2 .. 2.25e4
    x = _q(x * scales + 7.0)
    out, _ = shared_eval(lambda p, a: nl.layer_norm(p, a, None, None), x)
    assert (out - F.layer_norm(x, (d,))).abs().max() < 2e-2
    bad = x.clone()
    bad[1] = (x[1] - 7.0) / 3.0 * math.sqrt(0.98 * 2.0**15 * (1 + frac))  # variance past the end
    with pytest.raises(MPCRangeError, match=r"privlab\.mpc\.layer_norm: 1 of 4 .*variance"):
        shared_eval(lambda p, a: nl.layer_norm(p, a, None, None), bad)


def test_check_costs_and_that_inference_runs_without_them(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    from privlab.mpc.config import MPCConfig
    from privlab.mpc.demos import demo_model
    from privlab.mpc.inference import private_inference

    x = rand((50,), 10.0, 0)
    _, res = shared_eval(compare.relu, x)
    assert res.stats.per_op["op"].rounds == 5 and res.stats.per_op["range_check"].rounds == 6
    _, res = shared_eval(arith.mul, x, x)
    assert res.stats.per_op["range_check"].rounds == 8  # shadow truncation and product first
    _, res = shared_eval(compare.relu, x, config=MPCConfig(range_checks=False))
    assert "range_check" not in res.stats.per_op
    inf = private_inference(demo_model("mlp"), torch.rand(2, 1, 28, 28))
    assert "range_check" not in inf.stats.per_op and inf.stats.rounds == 17
