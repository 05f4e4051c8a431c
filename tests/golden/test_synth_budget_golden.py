"""Golden: the budgets privlab.synth records match independent accountant computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from dp_accounting import GaussianDpEvent
from dp_accounting.rdp import RdpAccountant

from privlab.accounting import epsilon as dpsgd_epsilon
from privlab.accounting.zcdp import ZCDPLedger, zcdp_closed_form, zcdp_epsilon
from privlab.errors import CorruptArtifactError
from privlab.synth import Column, Domain, Table, get_generator


@pytest.mark.parametrize(("eps", "delta"), [(0.5, 1e-5), (1.0, 1e-5), (4.0, 1e-6), (16.0, 1e-5)])
def test_cdp_rho_round_trips_through_privlab_accounting(eps: float, delta: float) -> None:
    snsynth_utils = pytest.importorskip("snsynth.utils")
    rho = float(snsynth_utils.cdp_rho(eps, delta))  # OpenDP's zCDP -> (eps, delta) inversion
    ours = zcdp_epsilon(rho, delta)
    # same Canonne-Kamath-Steinke conversion, evaluated on dp-accounting's order grid (slightly looser)
    assert ours == pytest.approx(eps, rel=2e-3)
    assert ours <= zcdp_closed_form(rho, delta)
    # independent: the Gaussian mechanism with sigma = 1/sqrt(2 rho) has exactly the RDP curve alpha*rho
    acc = RdpAccountant()
    acc.compose(GaussianDpEvent(1.0 / math.sqrt(2 * rho)))
    assert ours == pytest.approx(acc.get_epsilon(delta), rel=1e-9)


def test_closed_form_by_hand() -> None:
    # rho = 0.02, delta = 1e-5: 0.02 + 2 sqrt(0.02 * ln 1e5) = 0.9797...
    assert zcdp_closed_form(0.02, 1e-5) == pytest.approx(0.02 + 2 * math.sqrt(0.02 * math.log(1e5)))
    assert zcdp_epsilon(0.0, 1e-5) == 0.0 and math.isinf(zcdp_epsilon(math.inf, 1e-5))


def test_ledger_composes_additively_and_verifies() -> None:
    led = ZCDPLedger(1e-5)
    led.record("a", 0.01)
    led.record("b", 0.02)
    assert led.rho == pytest.approx(0.03) and led.epsilon() == pytest.approx(zcdp_epsilon(0.03, 1e-5))
    again = ZCDPLedger.from_json(led.to_json())
    assert again.epsilon() == led.epsilon()
    tampered = led.to_dict() | {"epsilon": 0.1}
    with pytest.raises(CorruptArtifactError):
        ZCDPLedger.from_dict(tampered)


@pytest.mark.slow
def test_mst_ledger_is_the_librarys_rho() -> None:
    snsynth_utils = pytest.importorskip("snsynth.utils")
    rng = np.random.default_rng(0)
    dom = Domain(tuple(Column(n, "categorical", ("0", "1", "2")) for n in "abc"))
    fitted = get_generator("mst").fit(Table(dom, rng.integers(0, 3, (200, 3))), 2.0, 1e-6)
    assert fitted.ledger is not None
    assert fitted.ledger.to_dict()["rho"] == pytest.approx(float(snsynth_utils.cdp_rho(2.0, 1e-6)))
    assert len(fitted.ledger.to_dict()["entries"]) == 3


def test_dpvae_ledger_matches_dpsgd_epsilon() -> None:
    rng = np.random.default_rng(0)
    dom = Domain(tuple(Column(n, "categorical", ("0", "1")) for n in "abc"))
    fitted = get_generator("dpvae", epochs=2, batch_size=50, accountant="rdp").fit(
        Table(dom, rng.integers(0, 2, (500, 3))), 3.0, 1e-5
    )
    led = fitted.ledger
    assert led is not None and led.to_dict()["mechanism"] == "poisson_subsampled_gaussian"
    entry = led.entries[0]  # type: ignore[union-attr]
    assert entry.sample_rate == pytest.approx(0.1) and entry.steps == 20
    assert fitted.epsilon() == pytest.approx(dpsgd_epsilon(entry.noise_multiplier, 0.1, 20, 1e-5, "rdp"))
    assert fitted.epsilon() <= 3.0
