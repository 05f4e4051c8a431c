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

import re
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
from privlab.llm.tokenization import format_probe, prefix_context, split_filled

TIE_RTOL = 1e-6  # relative gap below which two float32 sentence log-probs count as a tie


def filled_logprob(lm: LanguageModel, canary: Canary, candidates: Sequence[str]) -> np.ndarray:
    """(K,) ``log p(candidate + suffix | prefix)`` of each candidate filling of the canary's slot.

    Each filled sentence is tokenised whole, as in training, and the ids after the prefix's last
    complete token are scored (:func:`~privlab.llm.tokenization.split_filled`): the ranking is the
    ranking of the whole sentences' likelihoods.
    """
    ctx, conts = split_filled(lm.tokenizer, canary.prefix, [c + canary.suffix for c in candidates])
    return continuation_logprob(lm, ctx, conts).numpy().astype(np.float64)


def tie_credit(scores: np.ndarray, truth: int = 0) -> float:
    """1 / #ties if ``scores[truth]`` is (within :data:`TIE_RTOL`) the maximum, else 0.

    The expected accuracy of breaking ties uniformly at random: a model that cannot tell the
    candidates apart scores chance, whatever the candidates' order.
    """
    s = np.asarray(scores, dtype=np.float64)
    top = s.max()
    tied = s >= top - TIE_RTOL * max(1.0, abs(top))
    return float(tied[truth]) / float(tied.sum())


def cut_at_suffix(text: str, suffix: str) -> str:
    """``text`` up to the first ``suffix`` that ends it or is followed by whitespace (all of it if none).

    A sentence-final ``"."`` is found after an email's inner dots (``a.b@c.com.`` -> ``a.b@c.com``).
    """
    if suffix:
        for m in re.finditer(re.escape(suffix), text):
            if m.end() == len(text) or text[m.end()].isspace():
                return text[: m.start()]
    return text


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

    Chance is ``1 / n_candidates``; a tie at the top among t candidates that include the truth
    scores 1/t (:func:`tie_credit`).
    """
    check_int(n_candidates, "n_candidates", "inference_game", low=2)
    hits: dict[int, list[float]] = {}
    for i, c in enumerate(canaries):
        cands = [c.secret, *distractors(c.kind, n_candidates - 1, seed + i, exclude=[c.secret])]
        hits.setdefault(c.repetitions, []).append(tie_credit(filled_logprob(lm, c, cands), truth=0))
    return {r: float(np.mean(h)) for r, h in sorted(hits.items())}


def reconstruction_game(
    lm: LanguageModel, canaries: Sequence[Canary], n_candidates: int = 16, seed: int = 0
) -> dict[int, float]:
    """Accuracy per repetition count of reconstructing the masked PII from model-sampled candidates.

    Candidates are ``n_candidates`` sampled continuations of the prefix (from its last complete
    token, :func:`~privlab.llm.tokenization.prefix_context`), cut at the suffix that ends the sentence
    (:func:`cut_at_suffix`) or at the secret's token length plus two; the best-scoring filled
    sentence wins (ties credited 1/#ties).
    """
    check_int(n_candidates, "n_candidates", "reconstruction_game", low=1)
    tok = lm.tokenizer
    hits: dict[int, list[float]] = {}
    for i, c in enumerate(canaries):
        ctx, left = prefix_context(tok, c.prefix, format_probe(c.secret) + c.suffix)
        n_new = len(tok.encode(c.secret)) + 2
        raw = [tok.decode(s) for s in sample(lm, ctx, n_new, n_candidates, 1.0, 0, seed + i)]
        raw = [r[len(left) :] if r.startswith(left) else r for r in raw]
        cands = sorted({x for x in (cut_at_suffix(r, c.suffix).strip() for r in raw) if x})
        if not cands:
            hits.setdefault(c.repetitions, []).append(0.0)
            continue
        scores = filled_logprob(lm, c, cands)
        truth = cands.index(c.secret) if c.secret in cands else -1
        hits.setdefault(c.repetitions, []).append(tie_credit(scores, truth) if truth >= 0 else 0.0)
    return {r: float(np.mean(h)) for r, h in sorted(hits.items())}
