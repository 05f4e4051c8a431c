"""Golden test: the user-level epsilon equals dp-accounting's, computed directly for the same sampling and noise."""

import itertools
import math

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from privlab.accounting import calibrate_noise
from privlab.errors import InvalidParameterError
from privlab.fl import FedConfig, UserDPConfig, UserLevelAccountant, noise_multiplier_of


@pytest.mark.parametrize("z,n,m,rounds", [(1.2, 100, 10, 20), (0.8, 200, 20, 10)])
def test_user_level_epsilon_matches_dp_accounting(z, n, m, rounds):
    acct = UserLevelAccountant(n, m, z, delta=1e-5)
    per_round = []
    for t in range(rounds):
        acct.record_round()
        if t in (0, rounds // 2, rounds - 1):
            per_round.append(acct.epsilon())
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(m / n, dp_accounting.GaussianDpEvent(z)), rounds
    )
    direct = pld.PLDAccountant(value_discretization_interval=1e-4)
    direct.compose(event)
    assert per_round[-1] == pytest.approx(direct.get_epsilon(1e-5), rel=1e-9)
    assert all(a < b for a, b in itertools.pairwise(per_round))  # grows every round
    # replace-one bound for Flower's exact sampling (m of n without replacement), against dp-accounting's RDP
    r = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    r.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.SampledWithoutReplacementDpEvent(n, m, dp_accounting.GaussianDpEvent(z / 2)), rounds
        )
    )
    assert acct.epsilon_fixed_size() == pytest.approx(r.get_epsilon(1e-5), rel=1e-9)


def test_target_epsilon_is_calibrated_with_privlab_accounting():
    dp = UserDPConfig(target_epsilon=4.0, accountant="rdp")
    cfg = FedConfig(num_clients=1000, clients_per_round=10, rounds=20, dp=dp)
    z = noise_multiplier_of(cfg)
    assert z == pytest.approx(calibrate_noise(4.0, 0.01, 20, 1e-5, "rdp"))
    acct = UserLevelAccountant(1000, 10, z, 1e-5, accountant="rdp")
    acct.record_round(20)
    assert 3.9 < acct.epsilon() <= 4.0 + 1e-9
    assert acct.ledger.privacy_unit == "client"  # user-level: neighbouring federations differ by one client
    assert acct.ledger.to_dict()["privacy_unit"] == "client"


def test_zero_noise_is_infinite_and_bad_inputs_are_named():
    acct = UserLevelAccountant(10, 2, 0.0, 1e-5)
    assert math.isinf(acct.step())
    with pytest.raises(InvalidParameterError, match="'clients_per_round'"):
        UserLevelAccountant(10, 11, 1.0, 1e-5)
    with pytest.raises(InvalidParameterError, match="'noise_multiplier'"):
        UserDPConfig()
    with pytest.raises(InvalidParameterError, match="'noise_multiplier'"):
        UserDPConfig(noise_multiplier=1.0, target_epsilon=2.0)
    with pytest.raises(InvalidParameterError, match="'clipping'"):
        UserDPConfig(noise_multiplier=1.0, clipping="adaptive", noise="distributed")
    with pytest.raises(InvalidParameterError, match="'secagg'"):
        FedConfig(secagg=True, dp=UserDPConfig(noise_multiplier=1.0))
    with pytest.raises(InvalidParameterError, match="'clients_per_round'"):
        FedConfig(num_clients=10, clients_per_round=20)
