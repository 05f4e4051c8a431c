"""MST run on mbi by privlab: the row count is never an input, and the three steps spend exactly rho.

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


@pytest.fixture
def no_known_total(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every ``known_total`` handed to mbi's estimator (by privlab or a library it calls)."""
    from mbi import estimation

    seen: list[Any] = []
    real = estimation.mirror_descent

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("known_total"))
        return real(*args, **kwargs)

    monkeypatch.setattr(estimation, "mirror_descent", spy)
    return seen


def test_fitted_total_is_estimated_from_noisy_marginals(no_known_total: list[Any]) -> None:
    table = _table(300)
    _, rho = _rho(0.1, 1e-5)
    model, _ = mst.run_mst(_dataset(table), rho, seed=0, noise=_seeded_noise(0))
    assert no_known_total and all(k is None for k in no_known_total)
    # sigma_1 ~ 118 per cell at epsilon 0.1: the estimated total is far from the private n = 300
    assert abs(float(model.total) - 300) > 5
    # control: with (almost) no noise the same estimator recovers n, so the gap above is the noise
    model0, _ = mst.run_mst(_dataset(table), 1e6, seed=0, noise=_seeded_noise(0))
    assert float(model0.total) == pytest.approx(300, abs=0.5)


def test_mst_spends_rho_thirds(monkeypatch: pytest.MonkeyPatch) -> None:
    d, rho = 4, 0.05
    calls: list[tuple[float, int]] = []
    eps_used: list[float] = []
    real_em = mst.exponential_mechanism

    def em(q: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        eps_used.append(epsilon)
        return real_em(q, epsilon, rng)

    monkeypatch.setattr(mst, "exponential_mechanism", em)
    _, edges = mst.run_mst(_dataset(_table(200, d)), rho, seed=1, noise=_seeded_noise(1, calls))
    # each noise call is one marginal (sensitivity 1): 1/(2 sigma^2)-zCDP (Bun & Steinke 2016)
    one_way = sum(0.5 / s**2 for s, size in calls[:d])
    two_way = sum(0.5 / s**2 for s, size in calls[d:])
    select = sum(e**2 / 8 for e in eps_used)  # exponential mechanism: eps^2/8-zCDP
    assert len(calls) == d + (d - 1) and len(eps_used) == d - 1 == len(edges)
    assert [size for _, size in calls] == [3] * d + [9] * (d - 1)
    for part in (one_way, two_way, select):
        assert part == pytest.approx(rho / 3, rel=1e-12)
    assert one_way + two_way + select == pytest.approx(rho, rel=1e-12)


def test_tree_spans_and_finds_the_dependent_pair() -> None:
    data = _dataset(_table(500, 5))
    rho = 10.0
    model, edges = mst.run_mst(data, rho, seed=0, noise=_seeded_noise(2))
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
