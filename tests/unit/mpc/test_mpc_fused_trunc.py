"""The truncation mask folded into a triple (``material.trunc_mask``): identities and uniformity."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from privlab.mpc.dealer.material import trunc_mask

N = 1 << 16


def _ring(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-(1 << 63), (1 << 63) - 1, (n,), dtype=torch.int64, generator=g)


def _edges(f: int) -> torch.Tensor:
    """``v`` whose low ``64 - f`` bits sit at the case boundaries of the construction."""
    half, full = 1 << (63 - f), 1 << (64 - f)
    lows = [0, 1, half - 1, half, half + 1, full - 1]
    return torch.tensor([hi * full + lo for hi in (0, 3, -1) for lo in lows], dtype=torch.int64)


def _mu(r: torch.Tensor, f: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (r < 0).to(torch.int64), torch.bitwise_right_shift(torch.bitwise_and(r, (1 << 63) - 1), f)


@pytest.mark.parametrize("f", [13, 16, 20])
def test_mask_gives_the_truncation_pair_of_its_r(f: int) -> None:
    v = torch.cat([_ring(N, f), _edges(f)])
    s = _ring(len(v), 100 + f)
    r, k, w = trunc_mask(v, s, f)
    m, u = _mu(r, f)
    assert torch.equal(v - k, m * (1 << (63 - f)) - u)  # what trunc's [v] must hold
    assert torch.equal(w, torch.bitwise_left_shift(m, 64 - f))
    low = (1 << (64 - f)) - 1
    assert not torch.bitwise_and(k, low).any() and not torch.bitwise_and(w, low).any()  # f bits each
    assert torch.equal(torch.bitwise_and(r, (1 << f) - 1), torch.bitwise_and(s, (1 << f) - 1))


def _uniform_p(values: torch.Tensor, bins: int) -> float:
    counts = torch.bincount(values, minlength=bins).double().numpy()
    return float(chisquare(counts).pvalue)


def _fields(r: torch.Tensor, f: int) -> dict[str, torch.Tensor]:
    """4-bit windows of r: top (holds m), just above f (low bits of u), just below bit 63 (high bits of u)."""
    return {
        "top": torch.bitwise_and(torch.bitwise_right_shift(r, 60), 15),
        "u_low": torch.bitwise_and(torch.bitwise_right_shift(r, f), 15),
        "u_high": torch.bitwise_and(torch.bitwise_right_shift(r, 59), 15),
    }


@pytest.mark.parametrize("f", [13, 16])
def test_mask_is_uniform_and_a_biased_mask_is_caught(f: int) -> None:
    """r masks the product in the opened ``c = x + r + 2^62``, so it must be uniform in Z/2^64:
    chi-square on 4-bit windows accepts it; the same test rejects a mask that skips the
    ``v' > 2^(63-f)`` branch (m and u read straight off v'), i.e. the test can fail."""
    v, s = _ring(N, 1), _ring(N, 2)
    r, _, _ = trunc_mask(v, s, f)
    for name, vals in _fields(r, f).items():
        assert _uniform_p(vals, 16) > 1e-4, name
    vp = torch.bitwise_and(v, (1 << (64 - f)) - 1)
    m_bad = (vp <= (1 << (63 - f))).to(torch.int64)  # m = 1 half the time, but u below is not uniform given m
    u_bad = torch.bitwise_and(vp, (1 << (62 - f)) - 1)  # u confined to half its range
    bad = torch.bitwise_left_shift(m_bad, 63) + torch.bitwise_left_shift(u_bad, f) + torch.bitwise_and(s, (1 << f) - 1)
    assert min(_uniform_p(vals, 16) for vals in _fields(bad, f).values()) < 1e-6


def test_opened_value_does_not_depend_on_x() -> None:
    """The opened ``x + 2^62 + r`` has the same distribution for very different ``x`` (top byte)."""
    f = 16
    r, _, _ = trunc_mask(_ring(N, 3), _ring(N, 4), f)
    tops = []
    for x in (0, (1 << 40) - 7, -(1 << 45)):
        c = r + x + (1 << 62)
        tops.append(torch.bincount(torch.bitwise_and(torch.bitwise_right_shift(c, 56), 255), minlength=256))
    for t in tops:
        assert float(chisquare(t.double().numpy()).pvalue) > 1e-4
