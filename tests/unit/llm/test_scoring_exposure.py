"""Scoring and exposure against closed forms on toy models whose distributions are known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from privlab.errors import InvalidParameterError
from privlab.llm.exposure import (
    canary_exposure,
    exposure_from_rank,
    extrapolated_exposure,
    rank_of,
)
from privlab.llm.scoring import continuation_logprob, digit_tree_logprob, token_stats

from .toy import VOCAB, bigram_lm, table_lm, tokenizer


def test_token_stats_match_closed_form():
    lm = table_lm(seed=1)
    ids = torch.tensor([lm.tokenizer.encode("abc12 x:")])
    st = token_stats(lm, ids)
    logq = F.log_softmax(lm.module.table, -1)  # (T, V): position t-1 predicts token t
    want = torch.stack([logq[t - 1, ids[0, t]] for t in range(1, ids.shape[1])])
    assert torch.allclose(st.logp[0], want, atol=1e-6)
    q = logq.exp()
    mu = (q * logq).sum(-1)[: ids.shape[1] - 1]
    sd = ((q * logq**2).sum(-1)[: ids.shape[1] - 1] - mu**2).sqrt()
    assert torch.allclose(st.mu[0], mu, atol=1e-5)
    assert torch.allclose(st.sigma[0], sd, atol=1e-5)


def test_digit_tree_matches_slow_path_and_formula():
    g = torch.Generator().manual_seed(3)
    lm = bigram_lm(torch.randn(len(VOCAB), len(VOCAB), generator=g))
    tok = lm.tokenizer
    prefix = tok.encode("pin: ")
    fast = digit_tree_logprob(lm, prefix, [tok.encode(str(d))[0] for d in range(10)], 3)
    cands = [str(v).zfill(3) for v in range(1000)]
    slow = continuation_logprob(lm, prefix, [tok.encode(c) for c in cands])
    assert torch.allclose(fast, slow, atol=1e-4)
    logq = F.log_softmax(lm.module.bigram, -1)
    d = [tok.encode(str(i))[0] for i in range(10)]
    s = tok.encode(" ")[0]
    v = 472
    a, b, c = d[4], d[7], d[2]
    assert fast[v].item() == pytest.approx((logq[s, a] + logq[a, b] + logq[b, c]).item(), abs=1e-5)


def test_exposure_formula():
    assert exposure_from_rank(1, 1024) == 10.0
    assert exposure_from_rank(1024, 1024) == 0.0
    assert exposure_from_rank(4, 1000) == pytest.approx(math.log2(1000) - 2)
    with pytest.raises(InvalidParameterError, match="'rank' parameter"):
        exposure_from_rank(0, 10)
    assert rank_of(1.0, np.array([0.5, 1.0, 2.0, 3.0])) == 2


def _peaked(secret: str, strength: float) -> object:
    """Bigram model that, after each digit of ``secret``'s path, prefers the next digit of the secret."""
    tok = tokenizer()
    V = len(VOCAB)
    bg = torch.zeros(V, V)
    path = tok.encode(" " + secret)
    for a, b in itertools.pairwise(path):
        bg[a, b] = strength
    return bigram_lm(bg)


def test_exposure_exact_maximal_and_zero():
    secret = "3141"
    lm = _peaked(secret, 8.0)
    r = canary_exposure(lm, "pin: ", secret)
    assert r.method == "exact" and r.rank == 1
    assert r.exposure == pytest.approx(math.log2(10**4))
    flat = bigram_lm(torch.zeros(len(VOCAB), len(VOCAB)))  # every candidate equally likely
    assert canary_exposure(flat, "pin: ", secret).exposure == 0.0


def test_extrapolated_exposure_matches_exact_rank():
    # Context-free model over 6 digit positions: exact log-perplexities of all 10**6 strings by numpy.
    lm = table_lm(seed=5, scale=1.5)
    tok = lm.tokenizer
    prefix = "pin: "
    P = len(tok.encode(prefix))
    logq = F.log_softmax(lm.module.table, -1).numpy()
    d = [tok.encode(str(i))[0] for i in range(10)]
    per_pos = np.stack([-logq[P - 1 + k, d] for k in range(6)])  # (6, 10) NLL of digit at each position
    grid = np.zeros(1)
    for k in range(6):
        grid = (grid[:, None] + per_pos[k][None, :]).reshape(-1)
    order = np.argsort(grid)
    for q in (0.001, 0.01):  # secrets at known quantiles of the candidate space
        idx = order[int(q * len(grid))]
        secret = str(idx).zfill(6)
        exact = exposure_from_rank(rank_of(grid[idx], grid), 10**6)
        est = canary_exposure(lm, prefix, secret, exact_limit=1000, n_samples=4000, seed=1)
        assert est.method == "extrapolated"
        assert est.exposure == pytest.approx(exact, abs=0.6)
        gauss = extrapolated_exposure(
            est.secret_logppl, grid[np.random.default_rng(0).integers(0, 10**6, 4000)], "gaussian"
        )
        assert gauss == pytest.approx(exact, abs=1.0)


def test_extrapolated_exposure_controls():
    rng = np.random.default_rng(0)
    x = rng.normal(10, 2, 5000)
    assert extrapolated_exposure(10.0, x, "gaussian") == pytest.approx(1.0, abs=0.05)  # median -> 1 bit
    assert extrapolated_exposure(10 - 2 * 3.719, x, "gaussian") == pytest.approx(-math.log2(1e-4), abs=0.4)
    with pytest.raises(InvalidParameterError, match="'fit' parameter"):
        extrapolated_exposure(1.0, x, "cauchy")


def test_extrapolated_exposure_is_capped_at_log2_space():
    idx = {c: i for i, c in enumerate(VOCAB)}
    B = torch.zeros(len(VOCAB), len(VOCAB))
    for a, b in zip(" 1234", "12345", strict=True):
        B[idx[a], idx[b]] = 8.0  # strongly prefers the next digit of the secret
    lm = bigram_lm(B)
    exact = canary_exposure(lm, "my key is ", "12345", exact_limit=10**5)
    assert exact.rank == 1 and exact.exposure == pytest.approx(math.log2(1e5))
    est = canary_exposure(lm, "my key is ", "12345", exact_limit=10, n_samples=2000)
    # the fitted tail puts the secret far beyond the most likely candidate: clipped at rank 1
    assert est.method == "extrapolated" and est.clipped
    assert est.exposure == est.max_exposure == pytest.approx(math.log2(1e5))
    # control: a secret in the middle of the distribution is not clipped
    mid = canary_exposure(table_lm(seed=2), "my key is ", "12345", exact_limit=10, n_samples=2000)
    assert not mid.clipped and 0.0 <= mid.exposure < mid.max_exposure


def test_extrapolated_exposure_space_argument():
    x = np.random.default_rng(0).normal(10, 2, 5000)
    far = extrapolated_exposure(-40.0, x, "gaussian")  # 25 sd below the mean: ~ 450 bits unclipped
    assert far > 100
    assert extrapolated_exposure(-40.0, x, "gaussian", space=1000) == pytest.approx(math.log2(1000))
    assert extrapolated_exposure(10.0, x, "gaussian", space=1000) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(InvalidParameterError, match="'space' parameter"):
        extrapolated_exposure(1.0, x, "gaussian", space=0)
