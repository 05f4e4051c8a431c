"""Extraction of planted secrets by decoding from their prefix (Carlini et al. 2019 Sec. 8; 2021).

A canary counts as *extracted* by a method when a decoded continuation of its prefix starts with
its secret: greedy and beam give one continuation; sampling gives ``n_samples`` and reports both
"any sample" and the fraction of samples that reproduce it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from privlab.llm.canaries import Canary
from privlab.llm.generation import beam, greedy, sample
from privlab.llm.models import LanguageModel
from privlab.llm.tokenization import format_probe, prefix_context


@dataclass(frozen=True)
class ExtractionResult:
    """Per canary: ``extracted[method]`` (bool) and ``sample_rate`` (fraction of samples that match)."""

    canary: Canary
    extracted: dict[str, bool]
    sample_rate: float
    greedy_text: str


def extract_canary(
    lm: LanguageModel, canary: Canary, *, beams: int = 5, n_samples: int = 16, temperature: float = 1.0, seed: int = 0
) -> ExtractionResult:
    """Decode ``len(secret)`` tokens (plus slack) from the canary's prefix with greedy, beam and sampling.

    Decoding starts at the prefix's last complete token as the training sentence tokenises it
    (:func:`~privlab.llm.tokenization.prefix_context`; a trailing space merged into the secret's first
    token is generated, not fed), and a continuation must reproduce the prefix's leftover + secret.
    """
    tok = lm.tokenizer
    pre, left = prefix_context(tok, canary.prefix, format_probe(canary.secret) + canary.suffix)
    target = left + canary.secret
    n_new = len(tok.encode(target)) + 1
    g = tok.decode(greedy(lm, pre, n_new))
    b = tok.decode(beam(lm, pre, n_new, beams))
    ss = [tok.decode(s) for s in sample(lm, pre, n_new, n_samples, temperature, 0, seed)]
    hits = [s.startswith(target) for s in ss]
    return ExtractionResult(
        canary,
        {"greedy": g.startswith(target), "beam": b.startswith(target), "sample": any(hits)},
        sum(hits) / len(hits),
        g[len(left) :] if g.startswith(left) else g,
    )


def extraction_rates(results: Sequence[ExtractionResult]) -> dict[int, dict[str, float]]:
    """Fraction extracted per repetition count and method (and the mean sample match rate)."""
    out: dict[int, dict[str, float]] = {}
    for reps in sorted({r.canary.repetitions for r in results}):
        rs = [r for r in results if r.canary.repetitions == reps]
        row = {m: sum(r.extracted[m] for r in rs) / len(rs) for m in ("greedy", "beam", "sample")}
        row["sample_match_rate"] = sum(r.sample_rate for r in rs) / len(rs)
        row["n"] = len(rs)
        out[reps] = row
    return out
