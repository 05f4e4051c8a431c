"""Unit-level DP-SGD (McMahan et al. 2018): units Poisson-sampled at rate q, one example per sampled unit.

The statistical tests have a positive control (the unit sampler passes) and negative controls (the
example-level Poisson sampler, and a unit sampler at the wrong rate, are rejected by the same test).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader

from privlab.accounting import PrivacyLedger
from privlab.data import ArrayDataset
from privlab.dp import make_private
from privlab.dp.sampling import PoissonSampler, PrivateDataLoader, UnitPoissonSampler
from privlab.errors import InvalidParameterError

# 3 big units (50, 20, 5 examples) and 25 singleton units: 100 examples, 28 units
UNITS = [0] * 50 + [1] * 20 + [2] * 5 + list(range(3, 28))
STEPS = 2000
ALPHA = 1e-3  # per test, after Bonferroni over the units


def inclusion_counts(batches: list[list[int]], unit_of: list[int], n_units: int) -> torch.Tensor:
    """Number of batches in which each unit has at least one example."""
    counts = torch.zeros(n_units, dtype=torch.long)
    for b in batches:
        for u in {unit_of[i] for i in b}:
            counts[u] += 1
    return counts


def rejects_rate(counts: torch.Tensor, steps: int, q: float) -> bool:
    """Two-sided exact binomial test of 'each unit is in a batch with probability q', Bonferroni."""
    p = [stats.binomtest(int(c), steps, q).pvalue for c in counts]
    return min(p) < ALPHA / len(p)


def test_each_unit_is_sampled_with_probability_q_and_gives_one_example() -> None:
    q = 0.2
    s = UnitPoissonSampler(UNITS, q, steps=STEPS, generator=torch.Generator().manual_seed(1))
    batches = list(s)
    assert s.num_units == 28 and s.num_samples == 100 and len(batches) == STEPS
    for b in batches:  # never two examples of one unit in a step
        assert len({UNITS[i] for i in b}) == len(b)
    counts = inclusion_counts(batches, UNITS, 28)
    assert not rejects_rate(counts, STEPS, q)  # positive control
    # batch size is Binomial(U, q), not Binomial(N, q)
    sizes = torch.tensor([len(b) for b in batches], dtype=torch.float64)
    assert abs(sizes.mean().item() - 28 * q) < 4 * math.sqrt(28 * q * (1 - q) / STEPS)


def test_negative_controls_are_rejected() -> None:
    q = 0.2
    gen = torch.Generator().manual_seed(2)
    example_level = list(PoissonSampler(len(UNITS), q, STEPS, gen))  # a 50-example unit is in ~100% of steps
    assert rejects_rate(inclusion_counts(example_level, UNITS, 28), STEPS, q)
    wrong_rate = list(UnitPoissonSampler(UNITS, 0.23, STEPS, gen))  # units at 0.23 instead of 0.2
    assert rejects_rate(inclusion_counts(wrong_rate, UNITS, 28), STEPS, q)


def test_the_example_of_a_sampled_unit_is_uniform() -> None:
    s = UnitPoissonSampler(UNITS, 1.0, steps=4000, generator=torch.Generator().manual_seed(3))
    picks = torch.zeros(50)
    for b in s:
        assert len(b) == 28  # q = 1: every unit, one example each
        picks[b[0]] += 1  # the big unit's examples are 0..49, the smallest indices
    assert stats.chisquare(picks.numpy()).pvalue > ALPHA
    # negative control: the same test on picks where half the examples are 1.5x as likely
    weights = torch.tensor([1.0] * 25 + [1.5] * 25)
    biased = torch.bincount(
        torch.multinomial(weights, 4000, True, generator=torch.Generator().manual_seed(4)), minlength=50
    )
    assert stats.chisquare(biased.numpy()).pvalue < ALPHA


def test_secure_sampler_and_string_unit_ids() -> None:
    s = UnitPoissonSampler(["alice", "bob", "alice", "carol"], 0.999, steps=5, secure=True)
    assert s.num_units == 3
    for b in s:
        assert len(b) <= 3 and not {0, 2} <= set(b)


@pytest.mark.parametrize(
    ("unit_ids", "match"),
    [
        ([], r"'unit_ids'.*at least one example"),
        ("abc", r"'unit_ids'.*sequence"),
        ([0, 1.5], r"'unit_ids'.*ints or strings"),
        ([0, None], r"'unit_ids'.*ints or strings"),
        (torch.zeros(3), r"'unit_ids'.*integer tensor"),
        ([[0], [1]], r"'unit_ids'.*hashable"),
    ],
)
def test_bad_unit_ids_are_refused(unit_ids, match) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        UnitPoissonSampler(unit_ids, 0.5)


def test_bad_rate_and_steps_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="'sample_rate' parameter of UnitPoissonSampler"):
        UnitPoissonSampler([0, 1], 0.0)
    with pytest.raises(InvalidParameterError, match="'steps' parameter of UnitPoissonSampler"):
        UnitPoissonSampler([0, 1], 0.5, steps=0)


# -- make_private with unit_ids: the clipping is per unit ---------------------------------------------
BIG = 40  # one unit of 40 examples with large gradients; 40 singleton units with zero input


def unit_data() -> tuple[ArrayDataset, list[int]]:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(2 * BIG, 6)
    x[:BIG] = 10 + torch.rand(BIG, 6, generator=g)  # every big-unit example alone has norm >> C
    y = torch.zeros(2 * BIG, 1)
    return ArrayDataset(x, y), [0] * BIG + list(range(1, BIG + 1))


def max_step_norm(clipping: str, units: bool, steps: int = 60, per_unit: str = "one", grouped: bool = True) -> float:
    """The largest norm of the summed clipped gradient (no noise) over ``steps`` steps."""
    torch.manual_seed(0)
    model = nn.Linear(6, 1, bias=False)
    ds, unit_ids = unit_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    pt = make_private(
        model,
        opt,
        DataLoader(ds, batch_size=20),
        noise_multiplier=1.0,
        steps=steps,
        max_grad_norm=1.0,
        clipping=clipping,
        loss_reduction="sum",
        seed=0,
        unit_ids=unit_ids if units else None,
        per_unit=per_unit,
    )
    if not grouped:  # fault injection: the loader does not tell the optimizer the units
        pt.data_loader.on_groups = None
    pt.optimizer.add_noise_enabled = False
    pt.data_loader.sampler.steps = steps
    worst = 0.0
    for x, y in pt.data_loader:
        pt.optimizer.zero_grad()
        if x.shape[0]:
            ((model(x) - y) ** 2).sum().backward()
        pt.optimizer.step()
        worst = max(worst, float(model.weight.grad.norm()))
    return worst


@pytest.mark.parametrize("clipping", ["flat", "ghost"])
def test_a_unit_with_many_examples_contributes_at_most_c(clipping: str) -> None:
    assert max_step_norm(clipping, units=True) <= 1.0 + 1e-4
    # negative control: example-level sampling lets the same unit add ~q * 40 clipped gradients
    assert max_step_norm(clipping, units=False) > 3.0


def test_all_examples_of_a_unit_are_clipped_together() -> None:
    assert max_step_norm("flat", units=True, per_unit="all") <= 1.0 + 1e-4
    # negative control: the same batches clipped example by example let the 40-example unit add ~40 C
    assert max_step_norm("flat", units=True, per_unit="all", grouped=False) > 10.0


def test_per_unit_all_takes_whole_units_at_rate_q() -> None:
    q = 0.2
    s = UnitPoissonSampler(UNITS, q, steps=STEPS, generator=torch.Generator().manual_seed(5), per_unit="all")
    batches = list(s)
    sizes = torch.bincount(torch.tensor(UNITS))
    for b in batches:
        counts = torch.bincount(torch.tensor([UNITS[i] for i in b], dtype=torch.long), minlength=28)
        assert bool(((counts == 0) | (counts == sizes)).all())  # a unit is in entirely or not at all
    assert not rejects_rate(inclusion_counts(batches, UNITS, 28), STEPS, q)


def test_per_unit_all_is_refused_where_a_unit_cannot_be_clipped_whole() -> None:
    ds, unit_ids = unit_data()

    def call(**kw):
        model = nn.Linear(6, 1, bias=False)
        args = {"noise_multiplier": 1.0, "steps": 2, "per_unit": "all", "unit_ids": unit_ids} | kw
        return make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(ds, batch_size=10), **args)

    for kw in ({"clipping": "ghost"}, {"clipping": "per_layer"}, {"physical_batch_size": 4}, {"unit_ids": None}):
        with pytest.raises(InvalidParameterError, match=r"'per_unit' parameter of make_private can be 'all' only"):
            call(**kw)
    with pytest.raises(InvalidParameterError, match="'per_unit' parameter of make_private"):
        call(per_unit="some")
    pt = call(per_unit="one", clipping="ghost")
    with pytest.raises(InvalidParameterError, match=r"'groups'.*needs clipping='flat'"):
        pt.optimizer.set_groups(torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidParameterError, match="'per_unit' parameter of UnitPoissonSampler"):
        UnitPoissonSampler([0, 1], 0.5, per_unit="every")


def test_make_private_units_set_rate_ledger_and_expected_batch() -> None:
    ds, unit_ids = unit_data()
    model = nn.Linear(6, 1, bias=False)
    pt = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(ds, batch_size=10),
        noise_multiplier=1.0,
        steps=20,
        delta=1e-3,
        unit_ids=unit_ids,
        privacy_unit="user",
        physical_batch_size=3,
    )
    assert pt.sample_rate == pytest.approx(10 / (BIG + 1)) and pt.privacy_unit == "user"
    assert pt.optimizer.expected_batch_size == pytest.approx(10)
    assert isinstance(pt.data_loader, PrivateDataLoader)
    assert isinstance(pt.data_loader.sampler, UnitPoissonSampler)
    ledger = pt.accountant.ledger
    assert isinstance(ledger, PrivacyLedger) and ledger.privacy_unit == "user"
    assert ledger.to_dict()["privacy_unit"] == "user"


def test_make_private_refuses_inconsistent_units() -> None:
    ds, unit_ids = unit_data()

    def call(**kw):
        model = nn.Linear(6, 1, bias=False)
        args = {"noise_multiplier": 1.0, "steps": 2} | kw
        return make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), DataLoader(ds, batch_size=10), **args)

    with pytest.raises(InvalidParameterError, match=r"'unit_ids'.*one unit id per example.*\(80\)"):
        call(unit_ids=unit_ids[:-1])
    with pytest.raises(InvalidParameterError, match=r"'poisson_sampling'.*must be True with 'unit_ids'"):
        call(unit_ids=unit_ids, poisson_sampling=False)
    with pytest.raises(InvalidParameterError, match=r"batch_size of at most the number of units \(2\)"):
        call(unit_ids=[0] * 40 + [1] * 40)
    with pytest.raises(InvalidParameterError, match=r"'privacy_unit'.*without 'unit_ids'"):
        call(privacy_unit="secret")
    ledger = PrivacyLedger(1e-5, "pld", privacy_unit="secret")
    with pytest.raises(InvalidParameterError, match="privacy_unit='example'"):
        call(ledger=ledger, delta=1e-5)


def test_ledger_round_trip_keeps_the_unit_and_old_ledgers_are_example_level() -> None:
    led = PrivacyLedger(1e-5, "rdp", privacy_unit="document")
    led.record(1.1, 0.1, 10)
    back = PrivacyLedger.from_json(led.to_json())
    assert back.privacy_unit == "document" and back.epsilon() == pytest.approx(led.epsilon())
    from privlab._json import seal

    old = {k: v for k, v in led.to_dict().items() if k not in ("privacy_unit", "sha256")}
    assert PrivacyLedger.from_dict(seal(old)).privacy_unit == "example"
    with pytest.raises(InvalidParameterError, match="'privacy_unit' parameter of PrivacyLedger"):
        PrivacyLedger(1e-5, privacy_unit="")
