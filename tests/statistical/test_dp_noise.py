"""Statistical tests of DP-SGD's noise and Poisson sampling, each with positive and negative controls.

Noise: with zero gradients, k SGD steps (lr = 1) move each parameter by the sum of k independent
N(0, (sigma C / (q N))^2) draws, so the n parameter changes give ``n s^2 / v ~ chi2(n)`` with
``v = k (sigma C / (q N))^2``. The test accepts at two-sided level 1e-4; noise scaled by 2/3 or 3/2
(variance 0.44x or 2.25x) must be rejected. Tolerance checked on seeds 0-49 (all pass the positive
control and reject both negative controls; n = 2040 parameters).

Sampling: Poisson batch sizes are Binomial(N, q): a chi-square goodness-of-fit test accepts them and
rejects sizes drawn at q * 1.15 and fixed-size batches.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.utils.data import DataLoader

from privlab.data import ArrayDataset
from privlab.dp import PoissonSampler, add_noise, make_private

ALPHA = 1e-4
SIGMA, C, N, BATCH, K = 1.3, 0.7, 200, 20, 5


def noise_changes(seed: int, scale: float = 1.0, secure: bool = False) -> np.ndarray:
    torch.manual_seed(seed)
    model = nn.Linear(50, 40)  # 2040 parameters
    ds = ArrayDataset(torch.randn(N, 50), torch.zeros(N, 40))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    pt = make_private(model, opt, DataLoader(ds, batch_size=BATCH), noise_multiplier=SIGMA * scale,
                      max_grad_norm=C, seed=seed, secure_rng=secure, clipping="ghost")
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    for i, (x, _) in enumerate(pt.data_loader):
        if i == K:
            break
        pt.optimizer.zero_grad()
        (0.0 * model(x)).sum().backward()  # zero gradients: only the noise moves the parameters
        pt.optimizer.step()
    end = torch.cat([p.detach().flatten() for p in model.parameters()])
    return (end - start).double().numpy()


def variance_pvalue(delta: np.ndarray, var: float) -> float:
    n = delta.size
    stat = float((delta**2).sum() / var)  # mean is known to be 0
    cdf = stats.chi2.cdf(stat, n)
    return 2 * min(cdf, 1 - cdf)


EXPECTED_VAR = K * (SIGMA * C / BATCH) ** 2  # q N = BATCH


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_has_closed_form_variance(seed: int) -> None:
    assert variance_pvalue(noise_changes(seed), EXPECTED_VAR) > ALPHA


def test_secure_noise_has_closed_form_variance() -> None:
    assert variance_pvalue(noise_changes(0, secure=True), EXPECTED_VAR) > ALPHA


@pytest.mark.parametrize("scale", [2 / 3, 3 / 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wrong_noise_scale_is_rejected(seed: int, scale: float) -> None:
    """Negative control: the same test must reject noise at 2/3 and 3/2 of the right scale."""
    assert variance_pvalue(noise_changes(seed, scale=scale), EXPECTED_VAR) < ALPHA


def test_add_noise_functional_scale() -> None:
    gen = torch.Generator().manual_seed(0)
    out = add_noise({"w": torch.zeros(20000)}, std=2.5, generator=gen)["w"].double().numpy()
    assert variance_pvalue(out, 2.5**2) > ALPHA
    assert variance_pvalue(out, (2.5 * 1.5) ** 2) < ALPHA


def binomial_pvalue(sizes: np.ndarray, n: int, q: float) -> float:
    """Chi-square goodness of fit of integer sizes to Binomial(n, q), bins merged to expected >= 5."""
    lo, hi = int(stats.binom.ppf(1e-4, n, q)), int(stats.binom.ppf(1 - 1e-4, n, q))
    edges = np.arange(lo, hi + 2)
    probs = np.diff(stats.binom.cdf(edges - 1, n, q))
    probs[0] += stats.binom.cdf(lo - 1, n, q)
    probs[-1] += stats.binom.sf(hi, n, q)
    counts = np.array([(sizes == k).sum() for k in range(lo, hi + 1)], dtype=float)
    counts[0] += (sizes < lo).sum()
    counts[-1] += (sizes > hi).sum()
    exp = probs * sizes.size
    obs_m, exp_m, o, e = [], [], 0.0, 0.0
    for oi, ei in zip(counts, exp, strict=True):  # merge small bins left to right
        o, e = o + oi, e + ei
        if e >= 5:
            obs_m.append(o)
            exp_m.append(e)
            o, e = 0.0, 0.0
    obs_m[-1] += o
    exp_m[-1] += e
    return float(stats.chisquare(obs_m, np.array(exp_m) * sum(obs_m) / sum(exp_m)).pvalue)


@pytest.mark.parametrize("secure", [False, True])
def test_poisson_batch_sizes_are_binomial(secure: bool) -> None:
    n, q = 1000, 0.05
    gen = torch.Generator().manual_seed(0)
    sizes = np.array([len(b) for b in PoissonSampler(n, q, steps=3000, generator=gen, secure=secure)])
    assert binomial_pvalue(sizes, n, q) > ALPHA
    assert (sizes == 0).sum() == 0 or q < 0.01


def test_poisson_test_rejects_wrong_rate_and_fixed_size() -> None:
    """Negative controls: a 15% higher rate and fixed-size batches are rejected."""
    n, q = 1000, 0.05
    gen = torch.Generator().manual_seed(0)
    wrong = np.array([len(b) for b in PoissonSampler(n, q * 1.15, steps=3000, generator=gen)])
    assert binomial_pvalue(wrong, n, q) < ALPHA
    assert binomial_pvalue(np.full(3000, 50), n, q) < ALPHA


def test_poisson_produces_empty_batches_at_small_rate() -> None:
    gen = torch.Generator().manual_seed(0)
    sizes = np.array([len(b) for b in PoissonSampler(50, 0.01, steps=2000, generator=gen)])
    assert abs((sizes == 0).mean() - 0.99**50) < 0.04  # P(empty) = (1 - q)^N


def test_poisson_coins_are_not_on_the_float32_grid() -> None:
    """float32 uniforms are multiples of 2^-24, so ``rand() < q`` includes with probability ceil(q 2^24) / 2^24:
    19% above q at q = 1e-7. The coins are float64; the control shows the float32 draw would differ."""
    from privlab.dp.sampling import PoissonSampler

    q = 0.3  # the sampler's coins are the generator's float64 stream (a float32 stream gives other batches)
    batches = list(PoissonSampler(1000, q, steps=3, generator=torch.Generator().manual_seed(5)))
    ref = torch.Generator().manual_seed(5)
    expect = [(torch.rand(1000, generator=ref, dtype=torch.float64) < q).nonzero().flatten().tolist() for _ in range(3)]
    assert batches == expect
    ref32 = torch.Generator().manual_seed(5)
    assert batches[0] != (torch.rand(1000, generator=ref32) < q).nonzero().flatten().tolist()
    u32 = torch.rand(10**6, generator=torch.Generator().manual_seed(0))
    assert torch.all((u32 * 2**24) == torch.round(u32 * 2**24))  # control: float32 coins sit on the 2^-24 grid
