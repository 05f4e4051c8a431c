"""Contract over every registered attack, and each attack against a naive per-example loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from privlab.attacks import ATTACKS, RMIA, LiRA, PopulationSignals, Signals, get_attack
from privlab.attacks.rmia import rmia_scores
from privlab.errors import InvalidParameterError


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_contract(name, leaky):
    ref, mask, tgt, member = leaky
    attack = get_attack(name)
    assert attack.name in name
    if attack.needs_reference:
        with pytest.raises(InvalidParameterError, match="before fit"):
            attack.score(tgt)
    scores = attack.fit(ref, mask).score(tgt)
    assert scores.shape == (tgt.n_examples,) and np.isfinite(scores).all()
    again = get_attack(name).fit(ref, mask).score(tgt)
    np.testing.assert_array_equal(scores, again)
    assert scores[member].mean() > scores[~member].mean()  # higher = member
    with pytest.raises(InvalidParameterError, match="K = 1"):
        attack.score(ref)


def test_lira_against_naive_loop(leaky):
    ref, mask, tgt, _ = leaky
    phi = ref.confidence
    on = LiRA(online=True, variance="per_example").fit(ref, mask).score(tgt)
    off = LiRA(online=False, variance="per_example").fit(ref, mask).score(tgt)
    for n in range(0, tgt.n_examples, 37):
        i, o = phi[mask[:, n], n], phi[~mask[:, n], n]
        c = tgt.confidence[0, n]
        expect = norm.logpdf(c, i.mean(), i.std(ddof=1)) - norm.logpdf(c, o.mean(), o.std(ddof=1))
        assert on[n] == pytest.approx(expect, rel=1e-9)
        # offline: one-sided p-value Pr[N(mu_out, s_out) >= c]; the score is a monotone transform of it
        assert norm.sf(c, o.mean(), o.std(ddof=1)) == pytest.approx(norm.sf(off[n]), rel=1e-9)


def test_lira_variance_choice(leaky):
    ref, mask, _, _ = leaky
    assert LiRA().fit(ref, mask).variance_used == "global"  # 16 < 64 reference models
    big = Signals.from_logits(np.tile(ref.logits, (4, 1, 1)), ref.labels)
    assert LiRA().fit(big, np.tile(mask, (4, 1))).variance_used == "per_example"


def test_attack_r_against_naive_loop(leaky):
    ref, mask, tgt, _ = leaky
    s = get_attack("attack_r").fit(ref, mask).score(tgt)
    for n in range(0, tgt.n_examples, 41):
        out = ref.loss[~mask[:, n], n]
        frac = ((out > tgt.loss[0, n]).sum() + 0.5 * (out == tgt.loss[0, n]).sum()) / len(out)
        assert frac <= s[n] < frac + 1 / (4 * (~mask).sum(0).max() ** 2) + 1e-12


def test_rmia_against_naive_pairs(leaky):
    ref, mask, tgt, _ = leaky
    rng = np.random.default_rng(0)
    p_x, pr_x, p_z, pr_z = rng.random(30), rng.random(30) + 0.1, rng.random(20), rng.random(20) + 0.1
    got = rmia_scores(p_x, pr_x, p_z, pr_z, gamma=1.5)
    naive = [np.mean([(p_x[i] / pr_x[i]) / (p_z[j] / pr_z[j]) >= 1.5 for j in range(20)]) for i in range(30)]
    np.testing.assert_allclose(np.floor(got * 20 + 1e-9) / 20, naive)
    # offline Pr(x) = 0.5 ((1 + a) Pr_OUT(x) + (1 - a))
    attack = RMIA(online=False, a=0.4).fit(ref, mask)
    n = 5
    p_out = ref.prob[~mask[:, n], n].mean()
    assert attack._fit[0][n] == pytest.approx(0.5 * (1.4 * p_out + 0.6))
    online = RMIA(online=True).fit(ref, mask)
    assert online._fit[0][n] == pytest.approx(ref.prob[:, n].mean())


def test_rmia_population_and_a_tuning(leaky):
    ref, mask, tgt, member = leaky
    pop = PopulationSignals(target=tgt.select([0]), reference=ref)  # reuse shapes: K=16, M=400
    attack = RMIA(online=False).fit(ref, mask, pop.reference)
    assert attack.a_used in set(np.round(np.linspace(0, 1, 11), 2))
    s = attack.score(tgt, pop.target)
    assert s[member].mean() > s[~member].mean()
    with pytest.raises(InvalidParameterError, match=r"'population' parameter of RMIA\.score"):
        attack.score(tgt)
    with pytest.raises(InvalidParameterError, match="'a' parameter of RMIA"):
        RMIA(a=1.5)


def test_online_lira_refuses_a_mask_without_in_references(leaky):
    ref, mask, tgt, member = leaky
    none_in = np.zeros_like(mask)
    with pytest.raises(InvalidParameterError, match=r"'mask' parameter of lira_online\.fit must leave some example IN"):
        LiRA(online=True).fit(ref, none_in)
    with pytest.raises(InvalidParameterError, match="example OUT"):
        LiRA(online=False).fit(ref, ~none_in)
    # offline needs no IN reference (control: it runs and still separates members)
    s = LiRA(online=False).fit(ref, none_in).score(tgt)
    assert s[member].mean() > s[~member].mean()


def test_offline_lira_never_reads_in_references(leaky):
    ref, mask, tgt, _ = leaky
    mask = mask.copy()
    mask[:, :5] = True  # five examples IN every reference: no OUT observation of them
    base = LiRA(online=False).fit(ref, mask).score(tgt)
    moved = ref.confidence.copy()
    moved[mask] += 3.0  # change only the IN signals
    shifted = Signals(ref.logits, ref.labels, ref.loss, ref.prob, moved)
    np.testing.assert_array_equal(LiRA(online=False).fit(shifted, mask).score(tgt), base)
    # control: online LiRA does read them
    assert not np.array_equal(LiRA(online=True).fit(shifted, mask).score(tgt),
                              LiRA(online=True).fit(ref, mask).score(tgt))


@pytest.mark.parametrize("name", ["lira_online", "lira_offline", "attack_r", "rmia_offline"])
def test_target_over_other_examples_is_refused(name, leaky):
    ref, mask, tgt, _ = leaky
    attack = get_attack(name).fit(ref, mask)
    fewer = Signals.from_logits(tgt.logits[:, :-1], tgt.labels[:-1])
    with pytest.raises(InvalidParameterError, match=r"'target' parameter of .*score must hold signals on the 400"):
        attack.score(fewer)


def test_attack_r_tie_break_only_orders_equal_fractions(leaky):
    ref, mask, tgt, _ = leaky
    s = get_attack("attack_r").fit(ref, mask).score(tgt)
    out = ~mask
    n_out = out.sum(0)
    assert n_out.min() != n_out.max()  # the OUT count varies per example: the case that went wrong
    above = ((ref.loss > tgt.loss[0]) & out).sum(0) + 0.5 * ((ref.loss == tgt.loss[0]) & out).sum(0)
    frac = above / n_out
    i, j = np.triu_indices(len(s), 1)
    distinct = frac[i] != frac[j]
    assert np.all(np.sign(s[i] - s[j])[distinct] == np.sign(frac[i] - frac[j])[distinct])
