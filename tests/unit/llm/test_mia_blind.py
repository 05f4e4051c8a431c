"""LLM membership scores against their formulas on a toy model; the blind baseline's controls."""

from __future__ import annotations

import math
import warnings
import zlib

import numpy as np
import pytest
from torch.nn import functional as F

from privlab.llm.blind import DistributionShiftWarning, blind_baseline
from privlab.llm.mia import (
    DocStats,
    document_stats,
    llm_membership_inference,
    min_k_pp_score,
    min_k_score,
    score_documents,
    zlib_score,
)

from .toy import table_lm


def _closed_form(lm, text):
    ids = lm.tokenizer.encode(text)
    logq = F.log_softmax(lm.module.table, -1)
    lp = np.array([logq[t - 1, ids[t]].item() for t in range(1, len(ids))])
    q = logq.exp()
    mu = (q * logq).sum(-1).numpy()[: len(ids) - 1]
    sd = np.sqrt((q * logq**2).sum(-1).numpy()[: len(ids) - 1] - mu**2)
    return lp, mu, sd


def test_scores_match_formulas_on_toy_model():
    lm = table_lm(seed=2)
    text = "the cat sat on the mat"
    lp, mu, sd = _closed_form(lm, text)
    s = score_documents(lm, [text], k=0.2)
    n = math.ceil(0.2 * len(lp))
    assert s["loss"][0] == pytest.approx(lp.mean(), abs=1e-5)
    assert s["zlib"][0] == pytest.approx(lp.mean() / len(zlib.compress(text.encode())), abs=1e-6)
    assert s["min_k"][0] == pytest.approx(np.sort(lp)[:n].mean(), abs=1e-5)
    assert s["min_k_pp"][0] == pytest.approx(np.sort((lp - mu) / sd)[:n].mean(), abs=1e-4)
    ref = table_lm(seed=9)
    lp_ref, _, _ = _closed_form(ref, text)
    s = score_documents(lm, [text], reference=ref)
    assert s["reference"][0] == pytest.approx(lp.mean() - lp_ref.mean(), abs=1e-5)


def test_min_k_pp_hand_example():
    d = DocStats(
        "x", np.array([-1.0, -3.0, -0.5, -2.0]), np.array([-1.0, -1.0, -1.0, -1.0]), np.array([1.0, 2.0, 0.5, 1.0])
    )
    # z = [0, -1, 1, -1]; the lowest half: -1, -1
    assert min_k_pp_score(d, 0.5) == pytest.approx(-1.0)
    assert min_k_score(d, 0.5) == pytest.approx(-2.5)
    assert zlib_score(d) == pytest.approx(-1.625 / len(zlib.compress(b"x")))


def test_document_windows_cover_every_token():
    lm = table_lm(seed=0, T=16)
    text = "abcdefghij" * 5  # 50 tokens, longer than the 16-token context
    (d,) = document_stats(lm, [text])
    windows_tokens = sum(len(text[s : s + 16]) - 1 for s in range(0, 49, 15))
    assert len(d.logp) == windows_tokens


def test_uninformative_model_is_at_chance():
    lm = table_lm(seed=0)
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(list("abcdefgh "), 40)) for _ in range(200)]
    res = llm_membership_inference(lm, texts[:100], texts[100:], n_bootstrap=100)
    for m in res.metrics.values():
        assert m.auc_ci[0] < 0.5 < m.auc_ci[1] or abs(m.auc - 0.5) < 0.1


def _docs(rng, words, n, length=30):
    return [" ".join(rng.choice(words, length)) for _ in range(n)]


def test_blind_baseline_fires_on_shift_and_not_on_random_split():
    rng = np.random.default_rng(0)
    words = np.array(["thou", "art", "the", "king", "of", "all", "that", "lies", "before", "thee", "and", "me"])
    same = _docs(rng, words, 120)
    res = blind_baseline(same[:60], same[60:], seed=0, warn=False)
    assert not res.fires
    shifted = _docs(rng, np.r_[words, ["covid", "internet"]], 60)  # a vocabulary only non-members use
    with pytest.warns(DistributionShiftWarning):
        res = blind_baseline(same[:60], shifted, seed=0)
    assert res.fires and res.metrics.auc > 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blind_baseline(same[:60], shifted, seed=0, warn=False)
