"""Linear and bilinear protocols against plaintext torch (in-process transport)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privlab.mpc.encoding import encode
from privlab.mpc.protocols import arith

SET = settings(max_examples=8, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
ULP = 2.0**-16


@given(st.integers(1, 40), st.floats(1e-3, 1e6), st.integers(0, 2**31))
@SET
def test_trunc_is_floor_or_floor_plus_one(shared_eval, rand, n, scale, seed) -> None:  # type: ignore[no-untyped-def]
    x = rand((n,), scale, seed)
    raw = encode(x, 32)  # a product at 2f fractional bits
    out, res = shared_eval(lambda p, a: arith.trunc(p, a), raw.double() / 2**16, decoded=False)
    ref = torch.div(raw, 2**16, rounding_mode="floor")  # naive reference: exact floor division
    assert set((out - ref).unique().tolist()) <= {0, 1}
    assert res.stats.per_op["op"].rounds == 1
    assert res.stats.per_op["op"].bytes == 16 * n


@given(st.lists(st.integers(1, 6), min_size=1, max_size=3), st.floats(1e-2, 100), st.integers(0, 99))
@SET
def test_mul_matches_torch(shared_eval, rand, shape, scale, seed) -> None:  # type: ignore[no-untyped-def]
    x, y = rand(tuple(shape), scale, seed), rand(tuple(shape), scale, seed + 1)
    out, res = shared_eval(arith.mul, x, y)
    assert torch.allclose(out, x * y, atol=3 * ULP * (1 + 2 * scale), rtol=0)
    assert res.stats.per_op["op"].rounds == 2


@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 6), st.integers(0, 99))
@SET
def test_matmul_matches_torch_and_a_naive_loop(shared_eval, rand, n, k, m, seed) -> None:  # type: ignore[no-untyped-def]
    a, b = rand((n, k), 3.0, seed), rand((k, m), 3.0, seed + 7)
    out, res = shared_eval(arith.matmul, a, b)
    naive = torch.tensor([[sum(float(a[i, j] * b[j, c]) for j in range(k)) for c in range(m)]
                          for i in range(n)], dtype=torch.float64)
    assert torch.allclose(out, naive, atol=1e-3 * k, rtol=0)
    st_ = res.stats.per_op["op"]
    assert st_.rounds == 2
    assert st_.bytes == 16 * (n * k + k * m) + 16 * n * m  # Beaver openings + truncation


def test_batched_matmul_of_two_shared_tensors(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    q, k = rand((2, 3, 5, 4), 1.0, 1), rand((2, 3, 4, 5), 1.0, 2)
    out, _ = shared_eval(arith.matmul, q, k)
    assert torch.allclose(out, q @ k, atol=1e-3)


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2]),
       st.sampled_from([0, 1]), st.integers(0, 99))
@SET
def test_conv2d_matches_torch(shared_eval, rand, b, cin, cout, stride, pad, seed) -> None:  # type: ignore[no-untyped-def]
    x, w = rand((b, cin, 7, 6), 1.0, seed), rand((cout, cin, 3, 3), 0.5, seed + 3)
    out, _ = shared_eval(lambda p, a, c: arith.conv2d(p, a, c, stride=stride, padding=pad), x, w)
    assert torch.allclose(out, F.conv2d(x, w, stride=stride, padding=pad), atol=1e-3)


@given(st.floats(-50, 50), st.integers(0, 99))
@SET
def test_public_scaling_and_mean_and_avgpool(shared_eval, rand, c, seed) -> None:  # type: ignore[no-untyped-def]
    x = rand((2, 3, 6, 6), 4.0, seed)
    out, _ = shared_eval(lambda p, a: arith.mul_public(p, a, c), x)
    assert torch.allclose(out, x * c, atol=1e-3 * (1 + abs(c)))
    out, _ = shared_eval(lambda p, a: arith.mean(p, a, (-1, -2)), x)
    assert torch.allclose(out, x.mean((-1, -2)), atol=1e-4)
    out, res = shared_eval(lambda p, a: arith.avg_pool2d(p, a, 2), x)
    assert torch.allclose(out, F.avg_pool2d(x, 2), atol=1e-4)
    assert res.stats.per_op["op"].rounds == 1


def test_tiny_public_constant_keeps_relative_precision(shared_eval) -> None:  # type: ignore[no-untyped-def]
    x = torch.full((3,), 1000.0, dtype=torch.float64)
    out, _ = shared_eval(lambda p, a: arith.mul_public(p, a, 1e-4), x)
    assert torch.allclose(out, x * 1e-4, rtol=1e-3, atol=0)


def test_mul_many_costs_one_mul(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    x, y = rand((4,), 2.0, 3), rand((4,), 2.0, 4)

    def f(p, a, b):  # type: ignore[no-untyped-def]
        u, v = arith.mul_many(p, [(a, b), (a, a)])
        return torch.stack([u, v])

    out, res = shared_eval(f, x, y)
    assert torch.allclose(out, torch.stack([x * y, x * x]), atol=1e-3)
    assert res.stats.per_op["op"].rounds == 2
