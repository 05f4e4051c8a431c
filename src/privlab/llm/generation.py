"""Decoding from a prefix: greedy, beam search and sampling (temperature, top-k), on any LanguageModel.

No KV cache: every step re-reads the last ``block_size`` tokens. The continuations here are short
(a secret, a PII value), so the simple loop costs little and works the same for every model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from privlab._validation import check_choice, check_int, check_real
from privlab.llm.models import LanguageModel

METHODS = ("greedy", "beam", "sample")


def _last_logprobs(lm: LanguageModel, ctx: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(lm.logits(ctx[:, -lm.block_size :])[:, -1, :].float(), -1)  # (B, V)


@torch.no_grad()
def greedy(lm: LanguageModel, prefix: Sequence[int], n_new: int) -> list[int]:
    """The arg-max continuation of ``n_new`` tokens."""
    return beam(lm, prefix, n_new, beams=1)


@torch.no_grad()
def beam(lm: LanguageModel, prefix: Sequence[int], n_new: int, beams: int = 5) -> list[int]:
    """The highest-probability continuation found by beam search of width ``beams``."""
    check_int(n_new, "n_new", "beam", low=1)
    check_int(beams, "beams", "beam", low=1)
    lm.module.eval()
    seqs = torch.as_tensor([list(prefix)], dtype=torch.long)  # (b, P + t)
    scores = torch.zeros(1)
    for _ in range(n_new):
        lp = _last_logprobs(lm, seqs)  # (b, V)
        total = (scores.unsqueeze(1) + lp).reshape(-1)
        top = torch.topk(total, min(beams, total.numel()))
        V = lp.shape[1]
        rows, toks = top.indices // V, top.indices % V
        seqs = torch.cat([seqs[rows], toks.unsqueeze(1)], 1)
        scores = top.values
    return seqs[0, len(prefix) :].tolist()


@torch.no_grad()
def sample(
    lm: LanguageModel,
    prefix: Sequence[int],
    n_new: int,
    n_samples: int = 16,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
) -> list[list[int]]:
    """``n_samples`` sampled continuations (``top_k`` = 0: the full distribution)."""
    check_int(n_new, "n_new", "sample", low=1)
    check_int(n_samples, "n_samples", "sample", low=1)
    check_int(top_k, "top_k", "sample", low=0)
    t = check_real(temperature, "temperature", "sample", low=0.0, low_open=True)
    gen = torch.Generator().manual_seed(seed)
    lm.module.eval()
    seqs = torch.as_tensor([list(prefix)] * n_samples, dtype=torch.long)
    for _ in range(n_new):
        logits = lm.logits(seqs[:, -lm.block_size :])[:, -1, :].float() / t
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.shape[1])).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=gen)
        seqs = torch.cat([seqs, nxt], 1)
    return seqs[:, len(prefix) :].tolist()


def generate(
    lm: LanguageModel, prefix: Sequence[int], n_new: int, method: str = "greedy", **kw: object
) -> list[list[int]]:
    """Continuations by ``method`` ("greedy", "beam", "sample"): a list of one or more id lists."""
    check_choice(method, "method", "generate", METHODS)
    if method == "greedy":
        return [greedy(lm, prefix, n_new)]
    if method == "beam":
        return [beam(lm, prefix, n_new, int(kw.get("beams", 5)))]  # type: ignore[call-overload]
    return sample(lm, prefix, n_new, **kw)  # type: ignore[arg-type]
