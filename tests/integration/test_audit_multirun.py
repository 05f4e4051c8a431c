"""Multi-run white-box audit of DP-SGD: R real trainings, one Dirac gradient canary in half of them.

Positive controls: noise off, or clipping bypassed (canary raw norm 10 C), while the accountant still
claims epsilon = 1 -> both the eps_delta and the GDP lower bound exceed the claim. Negative control: the
correct implementation is not flagged by either bound. Fast path vs reference: the real trainings'
canary scores follow the closed form of ``privlab.audit.canaries`` (two-sample KS test against 20,000
model draws; for no_noise the IN scores equal the closed form exactly). Full-batch (q = 1) DP-SGD on
64 synthetic rows, 5 steps, 200 runs; checked on seed 0 (fast suite) and seeds 1-4 (slow suite).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from privlab.audit import AuditSpec, audit_dp_training_multi_run
from privlab.audit.canaries import dirac_score_model
from privlab.audit.dp_training import DPTrainingAudit, audit_summary
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError
from privlab.models import MLP

N, STEPS, RUNS, LR = 64, 5, 200, 0.5


def _data(n: int = N, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    x[:, :, :2, :] = 0.0  # always-zero "pixels": their first-layer weights are quiet coordinates
    y = (x[:, 0, 4:, :].mean((1, 2)) > 0.5).long()
    return ArrayDataset(x, y)


def _run(fault: str | None, seed: int = 0, runs: int = RUNS) -> DPTrainingAudit:
    torch.set_num_threads(1)
    spec = AuditSpec(
        lambda: MLP(64, (8,), 2), _data(), sample_rate=1.0, steps=STEPS, target_epsilon=1.0, lr=LR, seed=seed
    )
    return audit_dp_training_multi_run(spec, runs=runs, fault=fault, progress=False)


def _model(res: DPTrainingAudit, n: int, fault: str | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    inc = np.arange(n) < n // 2
    sim = dirac_score_model(
        inc,
        sample_rate=res.sample_rate,
        steps=res.steps,
        noise_multiplier=res.noise_multiplier,
        max_grad_norm=1.0,
        lr=LR,
        train_size=N,
        canary_norm_multiplier=10.0,
        fault=fault,
        rng=np.random.default_rng(seed),
    )
    return sim[inc], sim[~inc]


@pytest.fixture(scope="module")
def correct() -> DPTrainingAudit:
    return _run(None)


def test_correct_dp_sgd_is_consistent_multi_run(correct: DPTrainingAudit) -> None:
    assert correct.runs == RUNS and correct.canaries == 1
    assert correct.claimed_epsilon == pytest.approx(1.0, rel=0.02)
    assert not correct.violated, audit_summary(correct)
    assert correct.gdp_audit is not None and not correct.gdp_audit.violates_claim
    assert correct.gdp_audit.method == "multi_run_gdp" and correct.audit.method == "multi_run"
    d = correct.to_dict()
    assert d["runs"] == RUNS and d["gdp_audit"]["confidence"] == pytest.approx(0.95)


def test_real_runs_match_closed_form(correct: DPTrainingAudit) -> None:
    assert correct.scores is not None and correct.included is not None
    assert correct.included.sum() == RUNS // 2
    sim_in, sim_out = _model(correct, 20_000, None, 1)
    assert stats.ks_2samp(correct.scores[correct.included], sim_in).pvalue > 1e-3
    assert stats.ks_2samp(correct.scores[~correct.included], sim_out).pvalue > 1e-3
    # the canary moves its coordinate by lr T C / N on average; with RUNS runs the observed gap between the
    # means has sd sqrt(var_in / (R/2) + var_out / (R/2)) ~ 0.02 against a gap of 0.039, so it is checked to
    # 4 sd of the closed form (a relative tolerance of 0.5 was one sd: it held only for some seeds)
    gap = correct.scores[correct.included].mean() - correct.scores[~correct.included].mean()
    assert sim_in.mean() - sim_out.mean() == pytest.approx(LR * STEPS / N, rel=0.1)
    sd = np.sqrt((sim_in.var() + sim_out.var()) / (RUNS // 2))
    assert abs(gap - LR * STEPS / N) < 4 * sd


@pytest.mark.parametrize("fault", ["no_noise", "no_clipping"])
def test_broken_dp_sgd_is_caught_multi_run(fault: str) -> None:
    res = _run(fault, runs=100)
    assert res.violated, audit_summary(res)
    assert res.gdp_audit is not None and res.gdp_audit.violates_claim
    assert res.scores is not None and res.included is not None
    if fault == "no_noise":  # deterministic: IN moves by exactly lr T C / N, OUT not at all
        np.testing.assert_allclose(res.scores[res.included], LR * STEPS / N, rtol=1e-5)
        np.testing.assert_allclose(res.scores[~res.included], 0.0, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_correct_dp_sgd_is_consistent_multi_run_more_seeds(seed: int) -> None:
    res = _run(None, seed)
    assert not res.violated and res.gdp_audit is not None and not res.gdp_audit.violates_claim


def test_invalid_arguments_are_named() -> None:
    spec = AuditSpec(lambda: MLP(64, (8,), 2), _data(), sample_rate=1.0, steps=2, noise_multiplier=1.0)
    with pytest.raises(InvalidParameterError, match="'runs' parameter"):
        audit_dp_training_multi_run(spec, runs=4)
    with pytest.raises(InvalidParameterError, match="'fault' parameter"):
        audit_dp_training_multi_run(spec, runs=10, fault="bogus")
