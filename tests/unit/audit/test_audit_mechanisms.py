"""Reference mechanisms: their stated epsilon and their samples."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest

from privlab.audit import GaussianMechanism, RandomizedResponse
from privlab.errors import InvalidParameterError


def test_randomized_response_epsilon_and_rates() -> None:
    rr = RandomizedResponse(2.0)
    assert rr.epsilon_at(0.0) == 2.0
    p = rr.p_truth
    eps = rr.epsilon_at(0.01)  # hockey stick p - e^eps (1 - p) = delta at the exact epsilon
    assert p - math.exp(eps) * (1 - p) == pytest.approx(0.01)
    assert RandomizedResponse(0.1).epsilon_at(0.9) == 0.0
    ins, outs = rr.sample(100_000, 100_000, np.random.default_rng(0))
    assert ins.mean() == pytest.approx(p, abs=0.005) and outs.mean() == pytest.approx(1 - p, abs=0.005)
    scores, inc = rr.sample_one_run(100_000, np.random.default_rng(1))
    assert inc.mean() == pytest.approx(0.5, abs=0.01) and np.mean(scores == inc) == pytest.approx(p, abs=0.005)


def test_gaussian_mechanism_matches_dp_accounting() -> None:
    g = GaussianMechanism.from_epsilon(2.0, 1e-5)
    assert g.epsilon_at(1e-5) == pytest.approx(2.0, abs=1e-8)
    acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dp_accounting.GaussianDpEvent(g.sigma))
    assert acc.get_epsilon(1e-5) == pytest.approx(2.0, abs=5e-3)
    ins, outs = g.sample(50_000, 40_000, np.random.default_rng(0))
    assert ins.shape == (50_000,) and outs.shape == (40_000,)
    assert ins.mean() == pytest.approx(1.0, abs=0.05) and outs.std() == pytest.approx(g.sigma, rel=0.02)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RandomizedResponse(-1.0), "'epsilon' parameter of RandomizedResponse"),
        (lambda: GaussianMechanism(0.0), "'sigma' parameter of GaussianMechanism"),
        (lambda: GaussianMechanism.from_epsilon(1.0, 0.0), "'delta' parameter"),
        (lambda: RandomizedResponse(1.0).sample(-1, 2, np.random.default_rng()), "'n_in' parameter"),
    ],
)
def test_invalid(make: object, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        make()  # type: ignore[operator]
