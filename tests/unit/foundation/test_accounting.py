"""privlab.accounting: edge cases, validation, calibration round trip, ledger round trip."""

from __future__ import annotations

import json
import math

import pytest

from privlab.accounting import PrivacyLedger, calibrate_noise, epsilon
from privlab.errors import CorruptArtifactError, InvalidParameterError

MNIST = {"sample_rate": 256 / 60000, "steps": 2340, "delta": 1e-5}  # 10 epochs of batch 256


@pytest.mark.parametrize("acc", ["pld", "rdp"])
def test_zero_noise_is_infinite_epsilon(acc: str) -> None:
    assert epsilon(0.0, 0.01, 10, 1e-5, acc) == math.inf


@pytest.mark.parametrize("acc", ["pld", "rdp"])
def test_no_steps_or_no_sampling_is_zero(acc: str) -> None:
    assert epsilon(1.0, 0.01, 0, 1e-5, acc) == 0.0
    assert epsilon(1.0, 0.0, 100, 1e-5, acc) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"delta": -1e-5}, "delta"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"sample_rate": -0.1}, "sample_rate"),
        ({"noise_multiplier": -1.0}, "noise_multiplier"),
        ({"steps": -3}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"accountant": "moments"}, "accountant"),
        ({"delta": float("nan")}, "delta"),
    ],
)
def test_invalid_input_names_the_parameter(kwargs: dict, name: str) -> None:
    args = {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 10, "delta": 1e-5} | kwargs
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        epsilon(**args)


def test_epsilon_monotone_in_noise_steps_and_rate() -> None:
    base = epsilon(1.0, **MNIST)
    assert epsilon(1.2, **MNIST) < base
    assert epsilon(1.0, MNIST["sample_rate"], MNIST["steps"] * 2, MNIST["delta"]) > base
    assert epsilon(1.0, MNIST["sample_rate"] * 2, MNIST["steps"], MNIST["delta"]) > base


def test_pld_is_tighter_than_rdp() -> None:
    assert epsilon(1.1, **MNIST, accountant="pld") < epsilon(1.1, **MNIST, accountant="rdp")


@pytest.mark.parametrize("acc", ["pld", "rdp"])
@pytest.mark.parametrize("target", [1.0, 3.0, 8.0])
def test_calibration_round_trip(acc: str, target: float) -> None:
    sigma = calibrate_noise(target, **MNIST, accountant=acc)
    eps = epsilon(sigma, **MNIST, accountant=acc)
    assert eps <= target
    assert eps >= 0.99 * target


def test_calibration_rejects_bad_target() -> None:
    with pytest.raises(InvalidParameterError, match="'target_epsilon' parameter"):
        calibrate_noise(0.0, **MNIST)


def _ledger() -> PrivacyLedger:
    led = PrivacyLedger(delta=1e-5)
    led.record(1.1, 0.01, 100)
    led.record(1.1, 0.01)  # merged into the previous entry
    led.record(0.8, 0.02, 30)
    return led


def test_ledger_merges_and_composes() -> None:
    led = _ledger()
    assert [e.steps for e in led.entries] == [101, 30]
    assert led.steps == 131
    assert led.epsilon() > epsilon(1.1, 0.01, 101, 1e-5)
    assert led.epsilon() > epsilon(0.8, 0.02, 30, 1e-5)


def test_ledger_json_round_trip(tmp_path) -> None:
    led = _ledger()
    path = tmp_path / "ledger.json"
    led.to_json(path)
    again = PrivacyLedger.from_json(path)
    assert again.entries == led.entries
    assert again.epsilon() == pytest.approx(led.epsilon())
    assert PrivacyLedger.from_json(led.to_json()).entries == led.entries


def test_ledger_refuses_tampering(tmp_path) -> None:
    data = _ledger().to_dict()
    data["entries"][0]["noise_multiplier"] = 5.0  # a weaker claim smuggled in
    with pytest.raises(CorruptArtifactError, match="checksum"):
        PrivacyLedger.from_dict(data)
    with pytest.raises(CorruptArtifactError, match="JSON"):
        PrivacyLedger.from_json("{not json")
    bad = _ledger().to_dict() | {"schema_version": 99}
    with pytest.raises(CorruptArtifactError, match="schema_version"):
        PrivacyLedger.from_dict(bad)


def test_ledger_with_zero_noise_serialises_infinity() -> None:
    led = PrivacyLedger(delta=1e-5)
    led.record(0.0, 0.01, 5)
    d = json.loads(led.to_json())
    assert d["epsilon"] == "inf"
    assert PrivacyLedger.from_dict(d).epsilon() == math.inf
