"""MST's domain compression (McKenna, Miklau & Sheldon 2021): merge the categories whose noisy 1-way
count is below 3 sigma, re-express the released 1-way on the compressed domain, decompress samples.

Numpy only (no mbi): the MST-level tests (budget, utility with and without compression) are in
``test_mst.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from privlab.errors import InvalidParameterError
from privlab.synth.generators import compress as cz

# sigma 10, threshold 30: indices 1 (2), 2 (-5) and 4 (10) are below; 30 is exactly 3 sigma and stays
NOISY = np.array([100.0, 2.0, -5.0, 50.0, 10.0, 30.0])
SIGMA = 10.0


def _naive_lookup(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """Reference: walk the categories, kept ones numbered in order, every low one -> the last code."""
    low = [i for i, y in enumerate(noisy) if y < 3 * sigma]
    if len(low) < 2:
        return np.arange(len(noisy))
    out, j = [], 0
    for i in range(len(noisy)):
        if i in low:
            out.append(len(noisy) - len(low))
        else:
            out.append(j)
            j += 1
    return np.array(out)


def _q(comp: cz.AttributeCompression) -> np.ndarray:
    """Independent statement of the whitening weights: 1 per kept cell, 1/sqrt(k) for the merged one."""
    q = np.ones(comp.compressed_size)
    if comp.merged:
        q[-1] = 1 / math.sqrt(len(comp.merged))
    return q


def test_merges_exactly_the_low_categories() -> None:
    comp = cz.compress_attribute(NOISY, SIGMA)
    assert comp.kept == (0, 3, 5) and comp.merged == (1, 2, 4) and comp.compressed_size == 4
    assert comp.lookup.tolist() == [0, 3, 3, 1, 3, 2]
    assert np.array_equal(comp.lookup, _naive_lookup(NOISY, SIGMA))
    assert comp.weights == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    # the threshold is in units of the noise std: at sigma 5 (threshold 15) 10 is still low, 30 is not
    assert cz.compress_attribute(NOISY, 5.0).merged == (1, 2, 4)
    assert cz.compress_attribute(NOISY, 11.0).merged == (1, 2, 4, 5)  # 30 < 33
    rng = np.random.default_rng(0)
    for _ in range(200):  # random vectors against the reference loop
        y, s = rng.normal(20, 25, rng.integers(1, 12)), float(rng.uniform(1, 15))
        assert np.array_equal(cz.compress_attribute(y, s).lookup, _naive_lookup(y, s))


def test_fewer_than_two_low_categories_are_left_alone() -> None:
    for y in (np.array([100.0, 50.0, 40.0]), np.array([100.0, 50.0, 1.0])):
        comp = cz.compress_attribute(y, SIGMA)
        assert comp.merged == () and comp.kept == (0, 1, 2) and comp.compressed_size == 3
        assert comp.lookup.tolist() == [0, 1, 2]
    everything = cz.compress_attribute(np.array([1.0, -3.0, 2.0]), SIGMA)
    assert everything.kept == () and everything.compressed_size == 1
    assert everything.compress(np.array([0, 1, 2])).tolist() == [0, 0, 0]


def test_compressed_oneway_values() -> None:
    comp = cz.compress_attribute(NOISY, SIGMA)
    y, q = cz.compressed_oneway(NOISY, comp)
    assert q == pytest.approx([1, 1, 1, 1 / math.sqrt(3)])
    assert y == pytest.approx([100, 50, 30, (2 - 5 + 10) / math.sqrt(3)])
    # the sum of the released cells is preserved (y / q), so the total estimate is unchanged
    assert float((y / q).sum()) == pytest.approx(float(NOISY.sum()))


def test_whitened_merged_cell_has_noise_std_sigma() -> None:
    """Positive control: (y_c - q x_c) / sigma has std 1 on every cell; negative control: the merged
    cell without the 1/sqrt(k) weight has std sqrt(k) = sqrt(3) (checked on seeds 0-4)."""
    x = np.array([100.0, 3.0, 1.0, 50.0, 2.0, 40.0])
    comp = cz.compress_attribute(NOISY, SIGMA)  # the map is fixed; only the noise is redrawn
    x_c = np.append(x[list(comp.kept)], x[list(comp.merged)].sum())
    rng = np.random.default_rng(0)
    draws = x + rng.normal(0, SIGMA, (20000, x.size))
    resid = np.stack([(cz.compressed_oneway(y, comp)[0] - _q(comp) * x_c) / SIGMA for y in draws])
    assert resid.std(axis=0) == pytest.approx([1, 1, 1, 1], abs=0.03)
    unweighted = (draws[:, list(comp.merged)].sum(axis=1) - x_c[-1]) / SIGMA
    assert abs(unweighted.std() - 1) > 0.5 and unweighted.std() == pytest.approx(math.sqrt(3), abs=0.05)


def test_decompression_maps_back_into_the_original_domain() -> None:
    comp = cz.compress_attribute(NOISY, SIGMA)
    orig = np.arange(6).repeat(50)
    back = comp.decompress(comp.compress(orig), np.random.default_rng(0))
    assert back.shape == orig.shape and ((back >= 0) & (back < 6)).all()
    kept = np.isin(orig, comp.kept)
    assert np.array_equal(back[kept], orig[kept])  # kept categories round-trip exactly
    assert set(back[~kept]) == set(comp.merged)  # merged ones land only on merged values
    none = cz.compress_attribute(np.array([100.0, 50.0, 40.0]), SIGMA)
    codes = np.array([2, 0, 1, 1])
    assert np.array_equal(none.decompress(codes, np.random.default_rng(0)), codes)  # identity map


def test_decompression_frequencies_uniform_and_noisy() -> None:
    """Uniform draws fit 1/3 each and are rejected against the noisy weights; noisy draws fit
    (2, 0, 10) / 12 (the -5 category is clipped to 0) and are rejected against uniform. Seeds 0-4."""
    n = 6000
    uni = cz.compress_attribute(NOISY, SIGMA, "uniform")
    noisy = cz.compress_attribute(NOISY, SIGMA, "noisy")
    assert noisy.weights == pytest.approx((2 / 12, 0.0, 10 / 12))
    merged_code = np.full(n, len(uni.kept))
    u = uni.decompress(merged_code, np.random.default_rng(1))
    v = noisy.decompress(merged_code, np.random.default_rng(1))
    cu = np.array([(u == i).sum() for i in uni.merged])
    cv = np.array([(v == i).sum() for i in noisy.merged])
    assert stats.chisquare(cu, n * np.full(3, 1 / 3)).pvalue > 1e-3
    assert stats.chisquare(cu, n * np.array([2 / 12, 1e-9, 10 / 12 - 1e-9])).pvalue < 1e-6
    assert cv[1] == 0
    assert stats.chisquare(cv[[0, 2]], n * np.array([2 / 12, 10 / 12])).pvalue > 1e-3
    assert stats.chisquare(cv, n * np.full(3, 1 / 3)).pvalue < 1e-6
    # all merged counts <= 0: the noisy weights fall back to uniform
    assert cz.compress_attribute(np.array([100.0, -1.0, -2.0]), SIGMA, "noisy").weights == pytest.approx((0.5, 0.5))


def test_minimum_variance_total() -> None:
    # (100, var 1) and (200, var 4): (100/1 + 200/4) / (1 + 1/4) = 120
    assert cz.minimum_variance_total([(100.0, 1.0), (200.0, 4.0)]) == pytest.approx(120.0)
    assert cz.minimum_variance_total([(-50.0, 1.0)]) == 1.0  # at least one row, like mbi


def test_errors_name_the_parameter() -> None:
    comp = cz.compress_attribute(NOISY, SIGMA)
    with pytest.raises(InvalidParameterError, match="'sigma'"):
        cz.compress_attribute(NOISY, 0.0)
    with pytest.raises(InvalidParameterError, match="'decompress'"):
        cz.compress_attribute(NOISY, SIGMA, "proportional")
    with pytest.raises(InvalidParameterError, match="'noisy'"):
        cz.compress_attribute(np.zeros((2, 2)), SIGMA)
    with pytest.raises(InvalidParameterError, match="'noisy'"):
        cz.compressed_oneway(NOISY[:4], comp)
    with pytest.raises(InvalidParameterError, match="'codes'"):
        comp.decompress(np.array([0, 4]), np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="'sums'"):
        cz.minimum_variance_total([(1.0, 0.0)])
