"""The reference model: calibrated exposure against its closed form, and the experiment's wiring."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from privlab.errors import InvalidParameterError
from privlab.llm.config import CanaryExperimentConfig
from privlab.llm.experiment import run_canary_experiment
from privlab.llm.exposure import canary_exposure, exposure_from_rank, rank_of
from privlab.llm.models import LanguageModel
from privlab.llm.report import llm_section
from privlab.llm.tokenization import CharTokenizer

from .toy import CORPUS, TINY, VOCAB, TableLM, table_lm, tokenizer

PREFIX = "pin: "


def _tables(secret: str, prior: float, bump: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference, target) position tables: both prefer "0" by ``prior``; the target also the secret by ``bump``."""
    tok = tokenizer()
    ref = torch.randn(64, len(VOCAB), generator=torch.Generator().manual_seed(1)) * 0.3
    ref[:, tok.encode("0")[0]] += prior
    target = ref.clone()
    for j, ch in enumerate(secret):
        target[len(PREFIX) - 1 + j, tok.encode(ch)[0]] += bump
    return ref, target


def _lm(table: torch.Tensor) -> LanguageModel:
    return LanguageModel(TableLM(table), tokenizer(), "table", 64)


def _closed_form_px(table: torch.Tensor, n: int) -> np.ndarray:
    """``-log p(candidate | prefix)`` of every n-digit candidate, in the candidates' numeric order."""
    tok = tokenizer()
    lsm = torch.log_softmax(table, -1)
    ids = [tok.encode(str(d))[0] for d in range(10)]
    px = [
        -sum(float(lsm[len(PREFIX) - 1 + j, ids[d]]) for j, d in enumerate(digits))
        for digits in itertools.product(range(10), repeat=n)
    ]
    return np.array(px)


@pytest.mark.parametrize("exact_limit", [10_000, 10], ids=["exact", "extrapolated"])
def test_calibrated_exposure_removes_what_the_reference_explains(exact_limit):
    secret = "372"
    ref_table, target_table = _tables(secret, prior=6.0, bump=2.0)
    target, ref = _lm(target_table), _lm(ref_table)
    plain = canary_exposure(target, PREFIX, secret, exact_limit=exact_limit)
    cal = canary_exposure(target, PREFIX, secret, exact_limit=exact_limit, reference=ref)
    if exact_limit >= 1000:
        px, px_ref = _closed_form_px(target_table, 3), _closed_form_px(ref_table, 3)
        s = int(secret)
        assert plain.rank == rank_of(px[s], px)  # the prior's "000"-like candidates outrank the secret
        assert plain.rank > 1
        assert cal.secret_logppl == pytest.approx(px[s] - px_ref[s], abs=1e-4)
        assert cal.rank == rank_of(px[s] - px_ref[s], px - px_ref) == 1
        assert cal.exposure == pytest.approx(exposure_from_rank(1, 1000))
    assert cal.exposure > plain.exposure + 2.0


def test_calibrated_exposure_is_zero_when_the_reference_is_the_target():
    lm = table_lm(seed=3, scale=2.0)
    assert canary_exposure(lm, PREFIX, "4711").exposure > 0.0  # positive control: some ranking
    assert canary_exposure(lm, PREFIX, "4711", reference=lm).exposure == 0.0  # all ties: rank |R|


def test_reference_with_another_tokenizer_is_refused():
    lm = table_lm()
    other = LanguageModel(TableLM(torch.zeros(64, len(VOCAB))), CharTokenizer(VOCAB[::-1]), "reversed", 64)
    with pytest.raises(InvalidParameterError, match="'reference' parameter of canary_exposure"):
        canary_exposure(lm, PREFIX, "12", reference=other)


def test_config_refuses_base_reference_for_a_model_trained_from_scratch():
    with pytest.raises(InvalidParameterError, match=r"'reference' parameter .* only with model='smollm2'"):
        CanaryExperimentConfig(model="gpt", reference="base")
    with pytest.raises(InvalidParameterError, match="'reference'"):
        CanaryExperimentConfig(reference="teacher")


def test_public_reference_needs_text_after_the_corpus():
    cfg = replace(TINY, reference="public", corpus_chars=len(CORPUS) - 100)
    with pytest.raises(InvalidParameterError, match="needs corpus_chars // 2"):
        run_canary_experiment(cfg, CORPUS)


def test_experiment_with_public_reference():
    cfg = replace(TINY, reference="public", pii=False)
    out = run_canary_experiment(cfg, CORPUS)
    assert out["reference"]["kind"] == "public" and out["reference"]["steps"] == cfg.train.steps
    assert "reference" in out["mia"] and math.isfinite(out["mia"]["reference"]["metrics"]["auc"])
    cal = out["exposure_reference"]
    assert [c["secret"] for c in cal["canaries"]] == [c["secret"] for c in out["exposure"]["canaries"]]
    # the calibrated ranking is not the plain one (the reference is a different, trained model)
    pairs = zip(cal["canaries"], out["exposure"]["canaries"], strict=True)
    assert any(a["secret_logppl"] != b["secret_logppl"] for a, b in pairs)
    sec = llm_section({"non-private": out})
    assert any(t.title.startswith("Reference-calibrated exposure") for t in sec.tables)
    plain = run_canary_experiment(replace(cfg, reference="none"), CORPUS)
    assert "exposure_reference" not in plain and "reference" not in plain["mia"]
    assert plain["exposure"] == out["exposure"]  # the reference does not change the target's training
