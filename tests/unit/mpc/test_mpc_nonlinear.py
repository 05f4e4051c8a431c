"""Non-linear approximations against plaintext torch over their documented ranges."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privlab.mpc.protocols import nonlinear as nl

SET = settings(max_examples=5, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


def _uniform(n: int, lo: float, hi: float, seed: int, log: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    if log:
        return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    return lo + u * (hi - lo)


@given(st.integers(1, 200), st.integers(0, 999))
@SET
def test_exp(shared_eval, n, seed) -> None:  # type: ignore[no-untyped-def]
    x = _uniform(n, -16, 8, seed)
    out, res = shared_eval(nl.exp, x)
    ref = torch.exp(x)
    series = x.abs() ** 3 / (6 * 4**8)  # the documented relative error of the limit form
    assert ((out - ref).abs() <= (series + 5e-4) * ref + 1e-4).all()
    assert res.stats.per_op["op"].rounds == 19


def test_exp_clamped_is_zero_far_below(shared_eval) -> None:  # type: ignore[no-untyped-def]
    x = torch.tensor([-300.0, -1000.0, -5.0], dtype=torch.float64)
    out, _ = shared_eval(lambda p, a: nl.exp(p, a, clamp=True), x)
    assert torch.allclose(out, torch.exp(x), atol=1e-4)


@given(st.integers(1, 200), st.integers(0, 999))
@SET
def test_reciprocal(shared_eval, n, seed) -> None:  # type: ignore[no-untyped-def]
    x = _uniform(n, 2.0**-10, 2.0**14, seed, log=True)
    q = torch.round(x * 2**16) / 2**16
    out, res = shared_eval(nl.reciprocal, x)  # octave guess, any x in [6e-5, 16384]
    assert ((out - 1 / q).abs() <= 1e-4 / q + 3 * 2.0**-16).all()
    assert res.stats.per_op["op"].rounds == 21
    x = _uniform(n, 1.0, 16.0, seed)  # a softmax denominator: the linear guess on [1, 16]
    out, _ = shared_eval(lambda p, a: nl.reciprocal(p, a, 1.0, 16.0), x)
    assert ((out - 1 / x).abs() <= 1e-4 / x + 3 * 2.0**-16).all()


@given(st.integers(1, 200), st.integers(0, 999))
@SET
def test_rsqrt_and_sqrt(shared_eval, n, seed) -> None:  # type: ignore[no-untyped-def]
    x = _uniform(n, 2.0**-10, 2.0**14, seed, log=True)
    q = torch.round(x * 2**16) / 2**16  # the fixed-point input the parties actually hold
    out, res = shared_eval(nl.rsqrt, x)
    assert ((out - q.rsqrt()).abs() <= 2e-3 * q.rsqrt() + 1e-4).all()
    assert res.stats.per_op["op"].rounds == 23
    out, _ = shared_eval(nl.sqrt, x)
    assert ((out - q.sqrt()).abs() <= 2.0**-16 * q.sqrt() ** 2 * 1.5 + 2e-3 * q.sqrt()).all()


@given(st.integers(1, 100), st.integers(0, 999))
@SET
def test_log(shared_eval, n, seed) -> None:  # type: ignore[no-untyped-def]
    x = _uniform(n, 0.1, 100, seed, log=True)
    out, _ = shared_eval(nl.log, x)
    assert (out - x.log()).abs().max() < 1e-2


@given(st.integers(1, 200), st.floats(0.1, 60), st.integers(0, 999))
@SET
def test_sigmoid_tanh_gelu(shared_eval, n, scale, seed) -> None:  # type: ignore[no-untyped-def]
    x = _uniform(n, -scale, scale, seed)
    out, _ = shared_eval(nl.sigmoid, x)
    assert (out - torch.sigmoid(x)).abs().max() < 2e-3
    out, _ = shared_eval(nl.tanh, x / 2)
    assert (out - torch.tanh(x / 2)).abs().max() < 4e-3
    out, res = shared_eval(nl.gelu, x)
    assert (out - F.gelu(x)).abs().max() < 1e-3  # the exact (erf) GELU
    assert res.stats.per_op["op"].rounds == 17


@given(st.integers(1, 3), st.integers(2, 17), st.floats(0.1, 8), st.integers(0, 999))
@SET
def test_softmax(shared_eval, rand, rows, n, scale, seed) -> None:  # type: ignore[no-untyped-def]
    x = rand((rows, n), scale, seed)
    out, _ = shared_eval(nl.softmax, x)
    assert (out - torch.softmax(x, -1)).abs().max() < 5e-3


@given(st.integers(2, 32), st.floats(0.3, 10), st.integers(0, 999))
@SET
def test_layer_norm(shared_eval, rand, d, scale, seed) -> None:  # type: ignore[no-untyped-def]
    x = rand((3, d), scale, seed) + 2.0
    signs = torch.tensor([(-1.0) ** i for i in range(d)], dtype=torch.float64)
    x[0] = 1.0 + 0.1 * signs  # a near-constant row, variance 1e-2 (an empty image patch)
    w, b = rand((d,), 1.0, seed + 1), rand((d,), 1.0, seed + 2)
    out, _ = shared_eval(lambda p, a, ww, bb: nl.layer_norm(p, a, ww, bb), x, w, b)
    assert (out - F.layer_norm(x, (d,), w, b)).abs().max() < 2e-2
