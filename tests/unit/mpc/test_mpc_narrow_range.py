"""Protocols with comparisons of their own (the octave guess of ``rsqrt`` / ``reciprocal``, the
clamp of ``exp``) stay exact on their documented domains under a narrow ``MPCConfig.cmp_bits``:
their internal comparisons are widened (``compare.wide_bits``) instead of wrapping silently."""

from __future__ import annotations

import functools
from unittest import mock

import pytest
import torch
import torch.nn as nn

from privlab.errors import MPCRangeError
from privlab.mpc import check_ranges, compile_model, narrowest_cmp_bits
from privlab.mpc.config import MPCConfig
from privlab.mpc.inference import private_inference
from privlab.mpc.protocols import nonlinear as nl

F = 16


def _q(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 2**F) / 2**F  # the fixed-point value the parties hold


def _logspace(lo: float, hi: float, n: int = 48) -> torch.Tensor:
    return torch.logspace(torch.log10(torch.tensor(lo)), torch.log10(torch.tensor(hi)), n, dtype=torch.float64)


CASES = [
    ("rsqrt", nl.rsqrt, _logspace(1e-3, 16000.0), torch.rsqrt),
    ("reciprocal", nl.reciprocal, _logspace(1e-3, 16000.0), torch.reciprocal),
    ("sigmoid", nl.sigmoid, torch.linspace(-100, 100, 41, dtype=torch.float64), torch.sigmoid),
    ("log", nl.log, _logspace(0.1, 100.0), torch.log),
    ("exp clamped", functools.partial(nl.exp, clamp=True), torch.linspace(-300, 8, 41, dtype=torch.float64), torch.exp),
]


@pytest.mark.parametrize("cmp_bits", [26, 30])
@pytest.mark.parametrize(("name", "fn", "x", "ref"), CASES, ids=[c[0] for c in CASES])
def test_internal_comparisons_exact_under_narrow_cmp_bits(shared_eval, cmp_bits, name, fn, x, ref) -> None:  # type: ignore[no-untyped-def]
    out, _ = shared_eval(fn, x, config=MPCConfig(cmp_bits=cmp_bits))
    r = ref(_q(x))
    assert ((out - r).abs() <= 5e-3 * r.abs() + 5e-3).all(), f"{name} at cmp_bits={cmp_bits}"


def test_narrow_cmp_bits_without_widening_is_wrong(shared_eval) -> None:  # type: ignore[no-untyped-def]
    """Negative control: the same rsqrt compared at cmp_bits alone wraps and is far off."""
    x = _logspace(100.0, 16000.0, 8)
    with mock.patch.object(nl, "wide_bits", lambda party, need: None):
        out, _ = shared_eval(nl.rsqrt, x, config=MPCConfig(cmp_bits=28))
    assert ((out - torch.rsqrt(_q(x))).abs() > 1e-2).any()


def test_widening_keeps_the_rounds(shared_eval) -> None:  # type: ignore[no-untyped-def]
    """The widened comparisons cost wider tables, not rounds: rsqrt takes its 23 rounds at 28 bits
    (widened to 33) as at the default 40 (not widened), and more dealer bytes than unwidened."""
    x = _logspace(1e-3, 16000.0, 8)
    _, default = shared_eval(nl.rsqrt, x)
    _, narrow = shared_eval(nl.rsqrt, x, config=MPCConfig(cmp_bits=28))
    with mock.patch.object(nl, "wide_bits", lambda party, need: None):
        _, unwidened = shared_eval(nl.rsqrt, x, config=MPCConfig(cmp_bits=28))
    assert default.stats.per_op["op"].rounds == narrow.stats.per_op["op"].rounds == 23
    assert unwidened.stats.dealer_bytes < narrow.stats.dealer_bytes < default.stats.dealer_bytes


def test_layer_norm_inference_at_narrow_width() -> None:
    """End to end: a LayerNorm whose variances are 1e3-3e3, proven and run at cmp_bits = 28 (the
    range proof accepts it); without the widening the same run is off by ~1e9."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))
    with torch.no_grad():
        model[0].weight.mul_(150.0)
    x = torch.rand(6, 8)
    with torch.no_grad():
        var = model[0](x).var(-1, unbiased=False)
    assert var.min() > 1e3  # the case the octave guess wraps on at 28 bits
    res = private_inference(model, x, MPCConfig(cmp_bits=28))
    assert res.max_abs_error < 5e-2
    with mock.patch.object(nl, "wide_bits", lambda party, need: None):  # negative control
        assert private_inference(model, x, MPCConfig(cmp_bits=28)).max_abs_error > 1.0


def _cnn() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)).eval()


def test_narrowest_cmp_bits_is_the_proofs_edge() -> None:
    model = _cnn()
    pm = compile_model(model, (2, 1, 8, 8))
    bits = narrowest_cmp_bits(pm, (0.0, 1.0))
    assert 18 <= bits < 40
    check_ranges(pm, (0.0, 1.0), MPCConfig(cmp_bits=bits))  # proven at the width returned
    with pytest.raises(MPCRangeError, match="comparison"):
        check_ranges(pm, (0.0, 1.0), MPCConfig(cmp_bits=bits - 1))  # and not one bit narrower
    x = torch.rand(2, 1, 8, 8)
    res = private_inference(model, x, MPCConfig(cmp_bits=bits), input_range=(0.0, 1.0))
    assert res.max_abs_error < 1e-2
    narrow, wide = res.stats.dealer_bytes, private_inference(model, x, input_range=(0.0, 1.0)).stats.dealer_bytes
    assert narrow < wide


def test_narrowest_cmp_bits_depends_on_the_weights() -> None:
    """What announcing the width reveals: weights 16x larger need ~4 more bits."""
    model = _cnn()
    base = narrowest_cmp_bits(compile_model(model, (1, 1, 8, 8)), (0.0, 1.0))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(16.0)
    assert narrowest_cmp_bits(compile_model(model, (1, 1, 8, 8)), (0.0, 1.0)) in (base + 3, base + 4, base + 5)


def test_narrowest_cmp_bits_refuses_what_no_width_fixes() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[0].weight.fill_(1e9)  # the products leave the ring at any comparison width
    with pytest.raises(MPCRangeError, match="product"):
        narrowest_cmp_bits(compile_model(model, (1, 4)), (0.0, 1.0))
