"""The three PII leakage games of Lukas et al. 2023 ("Analyzing Leakage of Personally Identifiable
Information in Language Models", Sec. 3):

* **extraction** (no knowledge of the PII): generate text from generic prompts, tag PII in it
  (:func:`privlab.llm.pii.find_pii`), and compare with the training PII: recall = share of the
  training PII found, precision = share of what was found that is training PII;
* **reconstruction** (the sentence is known with its PII masked): sample candidate fillings from
  the model after the prefix, then keep the candidate whose filled sentence is most likely;
* **inference** (the sentence and a candidate set that contains the true PII are known): choose
  the candidate whose filled sentence ``prefix + candidate + suffix`` is most likely.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from privlab._validation import check_int
from privlab.errors import InvalidParameterError
from privlab.llm.canaries import Canary
from privlab.llm.generation import sample
from privlab.llm.models import LanguageModel
from privlab.llm.pii import PII_KINDS, distractors, find_pii
from privlab.llm.scoring import continuation_logprob


def filled_logprob(lm: LanguageModel, canary: Canary, candidates: Sequence[str]) -> np.ndarray:
    """(K,) ``log p(candidate + suffix | prefix)`` of each candidate filling of the canary's slot."""
    tok = lm.tokenizer
    suf = tok.encode(canary.suffix) if canary.suffix else []
    conts = [tok.encode(c) + suf for c in candidates]
    return continuation_logprob(lm, tok.encode(canary.prefix), conts).numpy().astype(np.float64)


@dataclass(frozen=True)
class ExtractionGame:
    """Per kind: PII found in generations, recall and precision against the training PII."""

    recall: dict[str, float]
    precision: dict[str, float]
    found: dict[str, int]
    n_generations: int


def extraction_game(
    lm: LanguageModel,
    training_pii: Sequence[Canary],
    prompts: Sequence[str],
    *,
    n_samples: int = 32,
    n_new: int = 48,
    seed: int = 0,
) -> ExtractionGame:
    """Sample ``n_samples`` continuations of each prompt, tag PII by regex, score against the training PII."""
    check_int(n_samples, "n_samples", "extraction_game", low=1)
    if not prompts:
        raise InvalidParameterError("The 'prompts' parameter of extraction_game must be non-empty. Got [] instead.")
    tok = lm.tokenizer
    texts = [
        tok.decode(s)
        for i, p in enumerate(prompts)
        for s in sample(lm, tok.encode(p), n_new, n_samples, 1.0, 0, seed + i)
    ]
    found = find_pii("\n".join(texts))
    recall, precision, count = {}, {}, {}
    for kind in PII_KINDS:
        truth = {c.secret for c in training_pii if c.kind == kind}
        hits = found.get(kind, set())
        count[kind] = len(hits)
        recall[kind] = len(hits & truth) / len(truth) if truth else 0.0
        precision[kind] = len(hits & truth) / len(hits) if hits else 0.0
    return ExtractionGame(recall, precision, count, len(texts))


def inference_game(
    lm: LanguageModel, canaries: Sequence[Canary], n_candidates: int = 10, seed: int = 0
) -> dict[int, float]:
    """Accuracy per repetition count of choosing the true PII among it and ``n_candidates - 1`` fresh values.

    Chance is ``1 / n_candidates``.
    """
    check_int(n_candidates, "n_candidates", "inference_game", low=2)
    hits: dict[int, list[bool]] = {}
    for i, c in enumerate(canaries):
        cands = [c.secret, *distractors(c.kind, n_candidates - 1, seed + i, exclude=[c.secret])]
        lp = filled_logprob(lm, c, cands)
        hits.setdefault(c.repetitions, []).append(int(np.argmax(lp)) == 0)
    return {r: float(np.mean(h)) for r, h in sorted(hits.items())}


def reconstruction_game(
    lm: LanguageModel, canaries: Sequence[Canary], n_candidates: int = 16, seed: int = 0
) -> dict[int, float]:
    """Accuracy per repetition count of reconstructing the masked PII from model-sampled candidates.

    Candidates are ``n_candidates`` sampled continuations of the prefix, cut at the suffix's first
    character (or at the secret's token length); the best-scoring filled sentence wins.
    """
    check_int(n_candidates, "n_candidates", "reconstruction_game", low=1)
    tok = lm.tokenizer
    hits: dict[int, list[bool]] = {}
    for i, c in enumerate(canaries):
        n_new = len(tok.encode(c.secret)) + 2
        raw = [tok.decode(s) for s in sample(lm, tok.encode(c.prefix), n_new, n_candidates, 1.0, 0, seed + i)]
        stop = c.suffix[:1]
        cands = sorted({(r.split(stop)[0] if stop else r).strip() or r for r in raw})
        best = cands[int(np.argmax(filled_logprob(lm, c, cands)))]
        hits.setdefault(c.repetitions, []).append(best == c.secret)
    return {r: float(np.mean(h)) for r, h in sorted(hits.items())}
