"""AIM's round budget: refused when its one-way marginals would take (nearly) all of rho.

smartnoise-synth's AIM measures the d one-way marginals at 0.9 rho / rounds each, so they take
0.9 d / rounds of rho. The check runs before the data is read; the slow test instruments the
library's noise and selection calls and sums what a permitted setting spends.
"""

from __future__ import annotations

import numpy as np
import pytest

import privlab.synth.generators.marginal as marginal
from privlab.errors import InvalidParameterError
from privlab.synth import Column, Domain, Table, get_generator
from privlab.synth.config import SynthRunConfig


def _table(d: int, n: int = 300) -> Table:
    rng = np.random.default_rng(0)
    dom = Domain(tuple(Column(f"a{j}", "categorical", ("x", "y", "z")) for j in range(d)))
    return Table(dom, rng.integers(0, 3, (n, d)))


@pytest.mark.parametrize("rounds", [1, 9, 10, 11])
def test_rounds_at_most_columns_over_0_9_are_refused_before_the_data(
    rounds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("snsynth")

    def no_data(table: Table) -> None:
        raise AssertionError("AIM read the data before validating 'rounds'")

    monkeypatch.setattr(marginal, "_dataset", no_data)
    with pytest.raises(InvalidParameterError, match=r"'rounds' parameter of AIM must be greater than 11\.1"):
        get_generator("aim", rounds=rounds, degree=3, workload_column="a9").fit(_table(10), 1.0, 1e-5)


def test_check_rounds_boundary() -> None:
    marginal.check_rounds(12, 10)  # 12 > 10 / 0.9: the one-ways take 75% of rho, allowed
    marginal.check_rounds(160, 10)  # the library's default 16 d
    with pytest.raises(InvalidParameterError, match="'rounds'"):
        marginal.check_rounds(11, 10)


def test_experiment_default_rounds_leave_budget_for_the_adaptive_rounds() -> None:
    cfg = SynthRunConfig()
    assert cfg.aim_rounds > len(cfg.columns) / 0.9
    assert 0.9 * len(cfg.columns) / cfg.aim_rounds < 0.25  # one-ways take under a quarter of rho
    with pytest.raises(InvalidParameterError, match="'aim_rounds'"):
        SynthRunConfig(aim_rounds=len(cfg.columns))


@pytest.mark.slow
def test_permitted_rounds_spend_exactly_rho(monkeypatch: pytest.MonkeyPatch) -> None:
    aim_mod = pytest.importorskip("snsynth.aim.aim")
    spent: dict[str, list[float]] = {"gauss": [], "em": []}
    real_noise, real_em = aim_mod.gaussian_noise, aim_mod.exponential_mechanism

    def noise(sigma: float, size: int | None = None) -> object:
        spent["gauss"].append(0.5 / sigma**2)  # one sensitivity-1 marginal per call
        return real_noise(sigma, size)

    def em(q: object, eps: float, sensitivity: float = 1.0, base_measure: object = None) -> object:
        spent["em"].append(eps**2 / 8)
        return real_em(q, eps, sensitivity, base_measure)

    monkeypatch.setattr(aim_mod, "gaussian_noise", noise)
    monkeypatch.setattr(aim_mod, "exponential_mechanism", em)
    d, rounds = 4, 8
    fitted = get_generator("aim", rounds=rounds).fit(_table(d), 1.0, 1e-5, seed=0)
    rho = fitted.ledger.to_dict()["rho"]  # type: ignore[union-attr]
    assert sum(spent["gauss"][:d]) == pytest.approx(0.9 * d / rounds * rho)
    assert sum(spent["gauss"]) + sum(spent["em"]) == pytest.approx(rho, rel=1e-9)
    assert len(spent["em"]) >= 2  # more than one adaptive selection
