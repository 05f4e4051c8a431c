"""Division by a public integer (mean, average pooling) and softmax over degenerate dimensions."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privlab.mpc.protocols import arith
from privlab.mpc.protocols import nonlinear as nl

SET = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ULP = 2.0**-16


@given(st.sampled_from([3, 5, 6, 7, 9, 10, 12, 100]), st.sampled_from([1.0, 1e3, 1e5, 3e6]), st.integers(0, 99))
@SET
def test_mean_error_is_independent_of_magnitude(shared_eval, rand, n, scale, seed) -> None:  # type: ignore[no-untyped-def]
    """Any n: the error stays below 2 ulps whatever the size of the values (it was ~|mean| 2^-17)."""
    x = torch.round(rand((4, n), scale, seed) * 2**16) / 2**16  # exactly representable inputs
    out, res = shared_eval(lambda p, a: arith.mean(p, a, -1), x)
    assert (out - x.mean(-1)).abs().max() < 2 * ULP
    assert res.stats.per_op["op"].rounds == 1


def test_mean_of_large_values_negative_control(shared_eval) -> None:  # type: ignore[no-untyped-def]
    """The inputs of the bound test are hard: scaling by an encoded 1/n instead is off by far more."""
    x = torch.full((1, 7), 2.0e6, dtype=torch.float64)
    wrong, _ = shared_eval(lambda p, a: arith.mul_public(p, a.sum(-1), 1.0 / 7), x)
    right, _ = shared_eval(lambda p, a: arith.mean(p, a, -1), x)
    assert (wrong - 2.0e6).abs().max() > 20 * ULP
    assert (right - 2.0e6).abs().max() < 2 * ULP


def test_avg_pool_3x3_and_layer_norm_of_width_5(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    x = torch.round(rand((1, 2, 6, 6), 3e3, 1) * 2**16) / 2**16
    out, _ = shared_eval(lambda p, a: arith.avg_pool2d(p, a, 3), x)
    assert (out - torch.nn.functional.avg_pool2d(x, 3)).abs().max() < 2 * ULP
    y = rand((3, 5), 40.0, 2) + 1e3  # large offset, variance ~1600: the mean must be exact
    out, _ = shared_eval(lambda p, a: nl.layer_norm(p, a, None, None), y)
    assert (out - torch.nn.functional.layer_norm(y, (5,))).abs().max() < 2e-2


def test_softmax_over_size_one_and_empty_dimensions(shared_eval, rand) -> None:  # type: ignore[no-untyped-def]
    x = rand((3, 1), 5.0, 0)
    out, _ = shared_eval(nl.softmax, x)
    assert torch.equal(out, torch.ones(3, 1, dtype=torch.float64))
    out, _ = shared_eval(lambda p, a: nl.softmax(p, a, 0), rand((1, 4), 5.0, 1))
    assert torch.equal(out, torch.ones(1, 4, dtype=torch.float64))
    out, _ = shared_eval(nl.softmax, torch.zeros(2, 0, dtype=torch.float64))
    assert out.shape == (2, 0)


def test_softmax_after_a_single_output_linear_in_private_inference() -> None:
    """``nn.Softmax`` after ``Linear(k, 1)`` failed with "math domain error"."""
    from privlab.mpc.inference import private_inference

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(6, 1), torch.nn.Softmax(dim=-1)).eval()
    res = private_inference(m, torch.rand(5, 6))
    assert torch.equal(res.output, torch.ones(5, 1, dtype=torch.float64))
