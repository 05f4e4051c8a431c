"""A toy causal LM whose next-token distribution is known in closed form (for formula tests), and a
tiny corpus and canary-experiment config for the wiring tests."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from privlab.llm.config import CanaryExperimentConfig, FineTuneConfig
from privlab.llm.models import LanguageModel
from privlab.llm.tokenization import CharTokenizer

VOCAB = tuple("0123456789abcdefghijklmnopqrstuvwxyz .:")

CORPUS = "\n".join(
    f"Enter the {w} and speak of {w}s, my lord, line {i}." for i, w in enumerate(["king", "queen"] * 200)
)
TINY = CanaryExperimentConfig(
    corpus_chars=6000,
    doc_chars=96,
    repetitions=(1, 4),
    per_level=1,
    n_digits=3,
    mia_documents=10,
    gpt_layers=1,
    gpt_embd=32,
    train=FineTuneConfig(steps=6, batch_size=8, seq_len=32),
)


class TableLM(nn.Module):
    """logits at position t = ``table[t]`` whatever the input (context-free), so every log-prob is known."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)  # (T_max, V)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        return self.table[:T].unsqueeze(0).expand(B, T, -1).clone()


class LastTokenLM(nn.Module):
    """logits = ``bigram[last token]``: a bigram model (context = the current token)."""

    def __init__(self, bigram: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("bigram", bigram)  # (V, V)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.bigram[idx]


def tokenizer() -> CharTokenizer:
    return CharTokenizer(VOCAB)


def table_lm(seed: int = 0, T: int = 64, scale: float = 1.0) -> LanguageModel:
    g = torch.Generator().manual_seed(seed)
    table = scale * torch.randn(T, len(VOCAB), generator=g)
    return LanguageModel(TableLM(table), tokenizer(), "table", T)


def bigram_lm(bigram: torch.Tensor, T: int = 64) -> LanguageModel:
    return LanguageModel(LastTokenLM(bigram), tokenizer(), "bigram", T)


class SpaceMergingTokenizer:
    """Character tokens, except that a space before a non-space character is merged into it (``" j"``
    is one token), the way GPT-2-style BPE (SmolLM2) attach a space to the next word. Encoding
    ``"is "`` alone ends in a lone ``" "`` token that never occurs before a word in whole-sentence
    encodings."""

    def __init__(self, chars: str) -> None:
        base = sorted(set(chars) | {" "})
        self.vocab = tuple(base) + tuple(" " + c for c in base if c != " ")
        self._pos = {t: i for i, t in enumerate(self.vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        out, i = [], 0
        while i < len(text):
            step = 2 if text[i] == " " and i + 1 < len(text) and text[i + 1] != " " else 1
            out.append(self._pos[text[i : i + step]])
            i += step
        return out

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


def memorising_bigram(tok: object, texts: list[str], boost: float = 8.0, seed: int | None = None) -> LanguageModel:
    """A bigram LM whose logit for each transition of ``tok.encode(text)`` is raised by ``boost``
    (zero or, with ``seed``, standard-normal logits elsewhere)."""
    V = tok.vocab_size  # type: ignore[attr-defined]
    B = torch.zeros(V, V) if seed is None else torch.randn(V, V, generator=torch.Generator().manual_seed(seed))
    for t in texts:
        ids = tok.encode(t)  # type: ignore[attr-defined]
        for a, b in itertools.pairwise(ids):
            B[a, b] += boost
    return LanguageModel(LastTokenLM(B), tok, "bigram", 256)  # type: ignore[arg-type]
