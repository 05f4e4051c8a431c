"""Fixed-size (sampling without replacement, replace-one) accounting: monotonicity, a reference point, ledger."""

from __future__ import annotations

import json

import dp_accounting
import pytest
from dp_accounting.rdp import RdpAccountant

from privlab.accounting import epsilon as poisson_epsilon
from privlab.accounting.fixed_size import FixedSizeLedger, calibrate_fixed_size_noise, fixed_size_epsilon
from privlab.errors import CorruptArtifactError


def test_matches_direct_dp_accounting_composition_with_sensitivity_two() -> None:
    """Independent composition: Gaussian with noise/sensitivity = sigma / 2 (replace-one moves the sum by 2C)."""
    acc = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    for _ in range(50):  # composed step by step rather than SelfComposed
        acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(1000, 50, dp_accounting.GaussianDpEvent(0.75)))
    assert fixed_size_epsilon(1.5, 1000, 50, 50, 1e-5) == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)


def test_monotone_and_costlier_than_poisson_add_remove() -> None:
    e = [fixed_size_epsilon(s, 1000, 50, 100, 1e-5) for s in (1.0, 2.0, 4.0)]
    assert e[0] > e[1] > e[2] > 0
    assert fixed_size_epsilon(2.0, 1000, 50, 200, 1e-5) > e[1]
    assert e[1] > poisson_epsilon(2.0, 0.05, 100, 1e-5, "rdp")  # replace-one: sensitivity 2C
    assert fixed_size_epsilon(0.0, 1000, 50, 1, 1e-5) == float("inf")


def test_calibration_meets_the_target() -> None:
    sigma = calibrate_fixed_size_noise(3.0, 1000, 50, 100, 1e-5)
    assert fixed_size_epsilon(sigma, 1000, 50, 100, 1e-5) <= 3.0
    assert fixed_size_epsilon(sigma - 0.01, 1000, 50, 100, 1e-5) > 3.0


def test_ledger_round_trip_and_tamper_refusal(tmp_path) -> None:
    led = FixedSizeLedger(1e-5, 1000, 50)
    led.record(2.0, steps=10)
    path = tmp_path / "l.json"
    led.to_json(path)
    back = FixedSizeLedger.from_json(path)
    assert back.steps == 10 and back.epsilon() == pytest.approx(led.epsilon())
    data = json.loads(path.read_text())
    data["steps"] = 1
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptArtifactError):
        FixedSizeLedger.from_json(path)


def test_calibration_finds_the_smallest_sigma_also_below_the_search_start() -> None:
    from privlab.accounting.fixed_size import calibrate_fixed_size_noise, fixed_size_epsilon

    z = calibrate_fixed_size_noise(3000.0, 100, 10, 20, 1e-5)
    assert z < 0.2  # the search used to start at 0.2 and return it for any budget 0.2 already met
    assert fixed_size_epsilon(z, 100, 10, 20, 1e-5) <= 3000.0 < fixed_size_epsilon(0.9 * z, 100, 10, 20, 1e-5)
