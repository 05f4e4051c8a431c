"""MST run on mbi by privlab: the row count is never an input, the three steps spend exactly rho (with
and without domain compression), and compression helps where the domain has many rare categories.

The mechanism's noise is injected (a seeded numpy sampler) so the tests are deterministic; the
generator-level test uses OpenDP's sampler like production. A JAX compile per fit makes the
generator test take a few seconds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from privlab.errors import InvalidParameterError
from privlab.synth import Column, Domain, Table, get_generator
from privlab.synth.generators import mst
from privlab.synth.generators.marginal import _dataset, _rho

pytest.importorskip("mbi")
pytest.importorskip("snsynth")


def _table(n: int, d: int = 4, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    dom = Domain(tuple(Column(f"a{j}", "categorical", ("x", "y", "z")) for j in range(d)))
    codes = rng.integers(0, 3, (n, d))
    codes[:, 1] = codes[:, 0]  # a strong pair for the tree to find
    return Table(dom, codes)


def _seeded_noise(seed: int, calls: list[tuple[float, int]] | None = None) -> mst.NoiseFn:
    rng = np.random.default_rng(seed)

    def noise(sigma: float, size: int) -> np.ndarray:
        if calls is not None:
            calls.append((sigma, size))
        return rng.normal(0.0, sigma, size)

    return noise


def _rare_table(n: int, k: int, d: int = 3, seed: int = 0) -> Table:
    """Two common categories (45% each) and k-2 rare ones sharing 10%; a1 copies a0."""
    rng = np.random.default_rng(seed)
    dom = Domain(tuple(Column(f"a{j}", "categorical", tuple(str(i) for i in range(k))) for j in range(d)))
    codes = rng.choice(k, size=(n, d), p=np.r_[0.45, 0.45, np.full(k - 2, 0.1 / (k - 2))])
    codes[:, 1] = codes[:, 0]
    return Table(dom, codes)


@pytest.fixture
def known_totals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[Any], Any]]:
    """Record (measurements, ``known_total``) of every call of mbi's estimator."""
    from mbi import estimation

    seen: list[tuple[list[Any], Any]] = []
    real = estimation.mirror_descent

    def spy(domain: Any, measurements: list[Any], *args: Any, **kwargs: Any) -> Any:
        seen.append((list(measurements), kwargs.get("known_total")))
        return real(domain, measurements, *args, **kwargs)

    monkeypatch.setattr(estimation, "mirror_descent", spy)
    return seen


def test_fitted_total_is_estimated_from_noisy_marginals(known_totals: list[tuple[list[Any], Any]]) -> None:
    from mbi.estimation import minimum_variance_unbiased_total

    table = _table(300)
    _, rho = _rho(0.1, 1e-5)
    fit = mst.run_mst(_dataset(table), rho, seed=0, noise=_seeded_noise(0), compress=False)
    # every total handed to mbi is the minimum-variance combination of the noisy sums: mbi's own
    # estimator (an independent implementation) on these identity-query measurements gives the same
    assert len(known_totals) == 2
    for ms, total in known_totals:
        assert total == pytest.approx(minimum_variance_unbiased_total(ms), rel=1e-9)
    # sigma_1 ~ 118 per cell at epsilon 0.1: the estimated total is far from the private n = 300
    assert abs(float(fit.model.total) - 300) > 5
    # control: with (almost) no noise the same estimator recovers n, so the gap above is the noise
    fit0 = mst.run_mst(_dataset(table), 1e6, seed=0, noise=_seeded_noise(0))
    assert float(fit0.model.total) == pytest.approx(300, abs=0.5)


def test_compressed_total_uses_the_unwhitened_sums(known_totals: list[tuple[list[Any], Any]]) -> None:
    """With compression the 1-ways have weighted queries (mbi's estimator skips them); the total is
    still the inverse-variance combination of every marginal's sum, recomputed here from y / q."""
    _, rho = _rho(1.0, 1e-5)
    fit = mst.run_mst(_dataset(_rare_table(400, 12)), rho, seed=0, noise=_seeded_noise(3))
    assert any(c.merged for c in fit.compression.values())
    sigma1, sigma2 = mst.mst_sigmas(rho, 3)
    ms, total = known_totals[-1]
    num = den = 0.0
    for m in ms:
        y = np.asarray(m.noisy_measurement)
        a = m.clique[0]
        if len(m.clique) == 1:
            comp = fit.compression[a]
            q = np.ones(y.size)
            if comp.merged:
                q[-1] = 1 / math.sqrt(len(comp.merged))
            s, v = float((y / q).sum()), sigma1**2 * comp.size
        else:
            s, v = float(y.sum()), sigma2**2 * y.size
        num, den = num + s / v, den + 1 / v
    assert total == pytest.approx(num / den, rel=1e-9)
    assert float(fit.model.total) == pytest.approx(total)


def _spy_selection(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the epsilon of every exponential-mechanism draw MST makes."""
    eps_used: list[float] = []
    real_em = mst.exponential_mechanism

    def em(q: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        eps_used.append(epsilon)
        return real_em(q, epsilon, rng)

    monkeypatch.setattr(mst, "exponential_mechanism", em)
    return eps_used


def _spent(calls: list[tuple[float, int]], eps_used: list[float], d: int) -> tuple[float, float, float]:
    """zCDP of the 1-way measurements, the 2-way measurements and the selection.

    Each noise call is one marginal (sensitivity 1): 1/(2 sigma^2)-zCDP (Bun & Steinke 2016); an
    exponential-mechanism draw at epsilon is epsilon^2/8-zCDP (Cesar & Rogers 2021).
    """
    return (sum(0.5 / s**2 for s, _ in calls[:d]), sum(0.5 / s**2 for s, _ in calls[d:]),
            sum(e**2 / 8 for e in eps_used))


def test_mst_spends_rho_thirds(monkeypatch: pytest.MonkeyPatch) -> None:
    d, rho = 4, 0.05
    calls: list[tuple[float, int]] = []
    eps_used = _spy_selection(monkeypatch)
    fit = mst.run_mst(_dataset(_table(200, d)), rho, seed=1, noise=_seeded_noise(1, calls))
    assert not any(c.merged for c in fit.compression.values())  # ~67 per category, 3 sigma_1 ~ 33
    assert len(calls) == d + (d - 1) and len(eps_used) == d - 1 == len(fit.edges)
    assert [size for _, size in calls] == [3] * d + [9] * (d - 1)
    parts = _spent(calls, eps_used, d)
    for part in parts:
        assert part == pytest.approx(rho / 3, rel=1e-12)
    assert sum(parts) == pytest.approx(rho, rel=1e-12)


@pytest.mark.parametrize("compress", [True, False])
def test_compression_spends_nothing_and_shrinks_the_2way_measurements(
    compress: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rare categories (2 of 4, ~8 rows each, below 3 sigma_1 ~ 33): with compression the 2-way
    measurements have 3 x 3 cells instead of 4 x 4, and the three parts still spend rho/3 each."""
    d, rho = 4, 0.05
    rng = np.random.default_rng(0)
    dom = Domain(tuple(Column(f"a{j}", "categorical", ("w", "x", "y", "z")) for j in range(d)))
    table = Table(dom, rng.choice(4, size=(400, d), p=[0.48, 0.48, 0.02, 0.02]))
    calls: list[tuple[float, int]] = []
    eps_used = _spy_selection(monkeypatch)
    fit = mst.run_mst(_dataset(table), rho, seed=1, noise=_seeded_noise(4, calls), compress=compress)
    cells = 9 if compress else 16
    assert [size for _, size in calls] == [4] * d + [cells] * (d - 1)  # 1-ways measured on the full domain
    assert all((c.merged == (2, 3)) is compress for c in fit.compression.values())
    for part in _spent(calls, eps_used, d):
        assert part == pytest.approx(rho / 3, rel=1e-12)


def test_tree_spans_and_finds_the_dependent_pair() -> None:
    data = _dataset(_table(500, 5))
    rho = 10.0
    fit = mst.run_mst(data, rho, seed=0, noise=_seeded_noise(2))
    model, edges = fit.model, fit.edges
    nodes = {"c0"}
    for _ in edges:  # connected and acyclic: d-1 edges reaching every column
        nodes |= {v for e in edges if nodes & set(e) for v in e}
    assert len(edges) == 4 and nodes == {f"c{j}" for j in range(5)}
    assert ("c0", "c1") in edges
    m = np.asarray(model.project(("c0", "c1")).datavector()).reshape(3, 3)
    assert np.trace(m) / m.sum() > 0.9  # the copy a1 = a0 survives in the model


def test_exponential_mechanism_frequencies() -> None:
    rng = np.random.default_rng(0)
    q = np.array([0.0, 1.0, 3.0])
    draws = np.bincount([mst.exponential_mechanism(q, 2.0, rng) for _ in range(20000)], minlength=3) / 20000
    want = np.exp(q) / np.exp(q).sum()  # exp(eps q / 2) with eps = 2
    assert np.abs(draws - want).max() < 0.015
    wrong = np.exp(2 * q) / np.exp(2 * q).sum()  # negative control: exp(eps q) is rejected
    assert np.abs(draws - wrong).max() > 0.05


def test_sigma_and_selection_formulas_and_errors() -> None:
    s1, s2 = mst.mst_sigmas(0.3, 5)
    assert s1 == pytest.approx(math.sqrt(15 / 0.6)) and s2 == pytest.approx(math.sqrt(12 / 0.6))
    assert mst.selection_epsilon(0.3, 5) == pytest.approx(math.sqrt(0.8 / 4))
    with pytest.raises(InvalidParameterError, match="'rho'"):
        mst.mst_sigmas(0.0, 3)
    with pytest.raises(InvalidParameterError, match="'d'"):
        mst.selection_epsilon(0.3, 1)
    with pytest.raises(InvalidParameterError, match="'decompress'"):
        mst.run_mst(_dataset(_table(20)), 1.0, seed=0, noise=_seeded_noise(0), decompress="median")
    with pytest.raises(InvalidParameterError, match="'decompress'"):
        get_generator("mst", decompress="median")
    with pytest.raises(InvalidParameterError, match="'compress'"):
        get_generator("mst", compress="yes")


def _grouped(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The (a0, a1) pair histogram over {common 0, common 1, any rare category}^2, as frequencies."""
    return np.bincount(3 * np.minimum(a, 2) + np.minimum(b, 2), minlength=9) / len(a)


def _pair_error(table: Table, compress: bool, seed: int, rho: float = 0.01) -> tuple[float, mst.MSTFit]:
    fit = mst.run_mst(_dataset(table), rho, seed=seed, noise=_seeded_noise(seed), compress=compress)
    np.random.seed(seed)  # mbi samples with numpy's global RNG
    cols = fit.synthetic_data(5000, np.random.default_rng(seed)).to_dict()
    truth = _grouped(table.codes[:, 0], table.codes[:, 1])
    return 0.5 * float(np.abs(_grouped(cols["c0"], cols["c1"]) - truth).sum()), fit


def test_compression_helps_on_many_rare_categories() -> None:
    """40 categories, 38 of them rare (~2.6 rows each at n = 1000, 3 sigma_1 ~ 110 at rho 0.01): the
    uncompressed 40 x 40 2-way measurement spreads noise mass over 1,600 cells. TVD of the synthetic
    (a0, a1) pairs over {0, 1, rare}^2: with compression 0.031 / 0.035 / 0.027 on seeds 0-2, without
    0.096 / 0.025 / 0.079 (over seeds 0-11: mean 0.033 vs 0.070, compressed lower on 11 of 12)."""
    with_c, without = [], []
    for seed in range(3):
        table = _rare_table(1000, 40, seed=seed)
        err, fit = _pair_error(table, True, seed)
        assert all(c.compressed_size == 3 for c in fit.compression.values())
        with_c.append(err)
        without.append(_pair_error(table, False, seed)[0])
    assert np.mean(with_c) < 0.05
    assert np.mean(with_c) < 0.75 * np.mean(without)


def test_compression_is_a_no_op_without_rare_categories() -> None:
    """Control: every category well above 3 sigma_1 -> nothing merged, and the compressed and
    uncompressed runs (same seeded noise) fit the same model."""
    table = _rare_table(1000, 3, seed=0)  # 45% / 45% / 10% (~100 rows; 3 sigma_1 ~ 33 at rho 0.1)
    fits = [mst.run_mst(_dataset(table), 0.1, seed=0, noise=_seeded_noise(5), compress=c) for c in (True, False)]
    assert not any(c.merged for c in fits[0].compression.values())
    assert fits[0].edges == fits[1].edges
    m0, m1 = (np.asarray(f.model.project(("c0", "c1")).datavector()) for f in fits)
    assert np.allclose(m0, m1)


def test_mst_generator_total_and_ledger() -> None:
    snsynth_utils = pytest.importorskip("snsynth.utils")
    fitted = get_generator("mst").fit(_table(300), 0.1, 1e-5, seed=0)
    assert abs(float(fitted.model.total) - 300) > 1  # type: ignore[attr-defined]
    led = fitted.ledger.to_dict()  # type: ignore[union-attr]
    assert led["rho"] == pytest.approx(float(snsynth_utils.cdp_rho(0.1, 1e-5)))
    assert [e["rho"] for e in led["entries"]] == pytest.approx([led["rho"] / 3] * 3)
    assert fitted.epsilon() == pytest.approx(0.1, rel=2e-3)
    syn = fitted.sample(50, seed=0)
    assert syn.domain == fitted.domain and len(syn) == 50
    assert np.array_equal(syn.codes, fitted.sample(50, seed=0).codes)  # sampling and decompression seeded


def test_mst_generator_samples_merged_categories_in_the_original_domain() -> None:
    table = _rare_table(600, 12)
    fitted = get_generator("mst").fit(table, 1.0, 1e-5, seed=0)
    comp = fitted.compression  # type: ignore[attr-defined]
    assert all(c.merged for c in comp.values())  # ~5 rows per rare category, 3 sigma_1 ~ 66
    syn = fitted.sample(2000, seed=1)
    assert ((syn.codes >= 0) & (syn.codes < 12)).all()
    # merged categories are drawn back across several original values, not collapsed onto one
    assert len(np.unique(syn.codes[:, 0][np.isin(syn.codes[:, 0], comp["c0"].merged)])) >= 5
