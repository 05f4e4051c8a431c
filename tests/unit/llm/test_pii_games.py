"""PII inference and reconstruction games: ties, the sentence-final suffix, and whole-sentence tokens.

Controls: a model that cannot tell candidates apart scores chance (1 / n_candidates) and a model
that memorised the sentence scores 1; an oracle sampler that returns the true continuation makes
reconstruction exact, for emails (inner dots) as for the other kinds. The space-merging tokenizer
(toy.py) reproduces SmolLM2's BPE behaviour without downloading a model.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
import torch

import privlab.llm.pii_games as games
from privlab.errors import InvalidParameterError
from privlab.llm.canaries import Canary
from privlab.llm.extraction import extract_canary
from privlab.llm.models import LanguageModel
from privlab.llm.pii import pii_canaries
from privlab.llm.scoring import token_stats
from privlab.llm.tokenization import CharTokenizer, prefix_context, split_filled

from .toy import SpaceMergingTokenizer, TableLM, memorising_bigram

PRINTABLE = string.printable[:95] + "\n"


@pytest.fixture(scope="module")
def canaries() -> list[Canary]:
    return [replace(c, repetitions=1) for c in pii_canaries(tuple(range(1, 9)), 1, seed=0)]


def test_tie_credit() -> None:
    assert games.tie_credit(np.array([-3.0, -3.0, -5.0])) == 0.5
    assert games.tie_credit(np.array([-3.0, -3.0, -5.0]), truth=2) == 0.0
    assert games.tie_credit(np.array([-1.0, -2.0, -3.0])) == 1.0
    assert games.tie_credit(np.full(10, -7.0)) == pytest.approx(0.1)
    assert games.tie_credit(np.array([-2.0, -1.0])) == 0.0


@pytest.mark.parametrize("kind", ["phone", "ssn"])
def test_uniform_model_scores_chance_on_fixed_length_pii(canaries: list[Canary], kind: str) -> None:
    tok = CharTokenizer.from_texts([PRINTABLE])
    uniform = LanguageModel(TableLM(torch.zeros(128, tok.vocab_size)), tok, "uniform", 128)
    cs = [c for c in canaries if c.kind == kind]
    acc = games.inference_game(uniform, cs, n_candidates=10, seed=0)
    assert acc == {1: pytest.approx(0.1)}  # every candidate ties: expected accuracy of a random pick


@pytest.mark.parametrize("tok", [CharTokenizer.from_texts([PRINTABLE]), SpaceMergingTokenizer(PRINTABLE)])
def test_memorising_model_wins_inference_game(canaries: list[Canary], tok: object) -> None:
    for c in canaries:  # positive control, one memorised sentence per model
        lm = memorising_bigram(tok, [c.text])
        assert games.inference_game(lm, [c], n_candidates=10, seed=3) == {1: 1.0}, c


def test_cut_at_suffix() -> None:
    assert games.cut_at_suffix("john.smith@example.com.\nThe", ".") == "john.smith@example.com"
    assert games.cut_at_suffix("john.smith@example.com.", ".") == "john.smith@example.com"
    assert games.cut_at_suffix("john.smith@exam", ".") == "john.smith@exam"
    assert games.cut_at_suffix("555-123-4567. Call", ".") == "555-123-4567"
    assert games.cut_at_suffix("anything", "") == "anything"


@pytest.mark.parametrize("tok", [CharTokenizer.from_texts([PRINTABLE]), SpaceMergingTokenizer(PRINTABLE)])
def test_reconstruction_with_oracle_sampler_is_exact(
    canaries: list[Canary], tok: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = memorising_bigram(tok, [c.text for c in canaries], seed=0)
    current: dict[str, Canary] = {}

    def oracle(lm_: LanguageModel, prefix: Sequence[int], n_new: int, n: int, t: float, k: int, seed: int):
        whole = lm_.tokenizer.encode(current["c"].text + "\nNext line")
        assert list(prefix) == whole[: len(prefix)]  # generation starts from ids the model trained on
        return [whole[len(prefix) : len(prefix) + n_new]] * n

    monkeypatch.setattr(games, "sample", oracle)
    kinds = set()
    for c in canaries:
        current["c"] = c
        kinds.add(c.kind)
        assert games.reconstruction_game(lm, [c], n_candidates=4) == {1: 1.0}, c
    assert "email" in kinds


def test_filled_logprob_scores_the_training_token_sequence(canaries: list[Canary]) -> None:
    tok = SpaceMergingTokenizer(PRINTABLE)
    lm = memorising_bigram(tok, [], seed=1)  # random bigram: every id sequence has its own log-prob
    for c in canaries[:4]:
        cands = [c.secret, "Jane Doe", "x.y@z.org"]
        got = games.filled_logprob(lm, c, cands)
        assert c.prefix.endswith(" ")
        k = len(tok.encode(c.prefix[:-1]))  # training tokens inside the prefix: all but its trailing space
        for cand, g in zip(cands, got, strict=True):
            whole = tok.encode(c.prefix + cand + c.suffix)
            ref = float(token_stats(lm, [whole]).logp[0, k - 1 :].sum())  # log p(whole[k:] | whole[:k])
            assert g == pytest.approx(ref, abs=1e-4)
        piecewise = tok.encode(c.prefix) + tok.encode(c.secret) + tok.encode(c.suffix)
        assert piecewise != tok.encode(c.text)  # the separately encoded sequence is not the trained one


def test_char_tokenizer_split_is_the_plain_concatenation() -> None:
    tok = CharTokenizer.from_texts([PRINTABLE])
    ctx, conts = split_filled(tok, "my key is ", ["123.", "9."])
    assert ctx == tok.encode("my key is ") and conts == [tok.encode("123."), tok.encode("9.")]
    assert prefix_context(tok, "my key is ", "000.") == (tok.encode("my key is "), "")
    stok = SpaceMergingTokenizer(PRINTABLE)
    assert prefix_context(stok, "my key is ", "000.") == (stok.encode("my key is"), " ")
    with pytest.raises(InvalidParameterError, match="'prefix'"):
        split_filled(stok, " ", ["a"])


def test_extraction_decodes_from_the_trained_context() -> None:
    tok = SpaceMergingTokenizer(PRINTABLE)
    c = Canary("my key is ", "2718", ".", 4)
    res = extract_canary(memorising_bigram(tok, [c.text]), c, n_samples=4)
    assert res.extracted["greedy"] and res.extracted["beam"] and res.greedy_text.startswith("2718")
    assert not extract_canary(memorising_bigram(tok, []), c, n_samples=4).extracted["greedy"]  # control
