"""Membership inference against language models, scored per document (higher score = member).

From per-token ``log p(x_t | x_<t)`` (and, for Min-K%++, the vocabulary mean ``mu_t`` and std
``sigma_t`` of ``log p(. | x_<t)``, see :mod:`privlab.llm.scoring`) over a document's tokens:

* ``loss`` (Yeom et al. 2018): ``mean_t log p(x_t | x_<t)`` (minus the average NLL);
* ``zlib`` (Carlini et al. 2021, Sec. 5.1): ``-(mean NLL) / zlib(x)``, with ``zlib(x)`` the length in
  bytes of the zlib-compressed text (its "zlib entropy");
* ``min_k`` (Shi et al. 2024, "Detecting Pretraining Data from Large Language Models"): the mean of
  the ``k`` fraction of lowest token log-probs;
* ``min_k_pp`` (Zhang et al. 2024, "Min-K%++"): the mean of the ``k`` fraction of lowest
  ``(log p(x_t | x_<t) - mu_t) / sigma_t``;
* ``reference`` (Carlini et al. 2021; Mireshghallah et al. 2022): ``mean_t log p_target - mean_t log p_ref``
  under a reference model that did not see the data.

Documents longer than the context are split into windows of ``block_size`` tokens, each read with a
fresh context; their token statistics are concatenated, so every score is computed over the whole
document (document-level aggregation). Metrics come from :func:`privlab.attacks.evaluate_scores`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from privlab._validation import check_real
from privlab.attacks import AttackMetrics, evaluate_scores
from privlab.errors import InvalidParameterError
from privlab.llm.models import LanguageModel
from privlab.llm.scoring import token_stats


@dataclass(frozen=True)
class DocStats:
    """Token statistics of one document: (n,) arrays ``logp``, ``mu``, ``sigma``, and its text."""

    text: str
    logp: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray


def document_stats(lm: LanguageModel, texts: Sequence[str], batch_size: int = 64) -> list[DocStats]:
    """Token statistics of each document, windows of ``block_size`` tokens concatenated per document."""
    windows: list[list[int]] = []
    owner: list[int] = []
    for i, t in enumerate(texts):
        ids = lm.tokenizer.encode(t)
        if len(ids) < 2:
            raise InvalidParameterError(
                f"The 'texts' parameter of document_stats must hold documents of at least 2 tokens. "
                f"Document {i} has {len(ids)}."
            )
        for s in range(0, len(ids) - 1, lm.block_size - 1):
            w = ids[s : s + lm.block_size]
            if len(w) >= 2:
                windows.append(w)
                owner.append(i)
    st = token_stats(lm, windows, batch_size)
    parts: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[] for _ in texts]
    for j, i in enumerate(owner):
        m = st.mask[j]
        parts[i].append((st.logp[j][m], st.mu[j][m], st.sigma[j][m]))
    return [
        DocStats(
            t,
            torch.cat([p[0] for p in ps]).numpy().astype(np.float64),
            torch.cat([p[1] for p in ps]).numpy().astype(np.float64),
            torch.cat([p[2] for p in ps]).numpy().astype(np.float64),
        )
        for t, ps in zip(texts, parts, strict=True)
    ]


def _lowest(x: np.ndarray, k: float) -> np.ndarray:
    n = max(1, math.ceil(k * len(x)))
    return np.sort(x)[:n]


def loss_score(d: DocStats) -> float:
    """``mean_t log p(x_t | x_<t)``."""
    return float(d.logp.mean())


def zlib_score(d: DocStats) -> float:
    """``-(mean NLL) / len(zlib.compress(text))``."""
    return float(d.logp.mean() / len(zlib.compress(d.text.encode("utf-8"))))


def min_k_score(d: DocStats, k: float = 0.2) -> float:
    """Mean of the lowest ``k`` fraction of token log-probs (Shi et al. 2024)."""
    return float(_lowest(d.logp, k).mean())


def min_k_pp_score(d: DocStats, k: float = 0.2) -> float:
    """Mean of the lowest ``k`` fraction of ``(log p - mu) / sigma`` (Zhang et al. 2024)."""
    z = (d.logp - d.mu) / np.maximum(d.sigma, 1e-12)
    return float(_lowest(z, k).mean())


def reference_score(d: DocStats, ref: DocStats) -> float:
    """``mean log p_target - mean log p_reference``."""
    return float(d.logp.mean() - ref.logp.mean())


SCORES: dict[str, Callable[..., float]] = {
    "loss": loss_score,
    "zlib": zlib_score,
    "min_k": min_k_score,
    "min_k_pp": min_k_pp_score,
}


@dataclass(frozen=True, eq=False)
class LLMMIAResult:
    """Metrics and scores (N,) per attack and the membership (N,) (members first)."""

    metrics: dict[str, AttackMetrics]
    scores: dict[str, np.ndarray]
    membership: np.ndarray


def score_documents(
    lm: LanguageModel, texts: Sequence[str], reference: LanguageModel | None = None, k: float = 0.2
) -> dict[str, np.ndarray]:
    """(N,) scores of every attack (``reference`` only when a reference model is given)."""
    kk = check_real(k, "k", "score_documents", low=0.0, high=1.0, low_open=True)
    docs = document_stats(lm, texts)
    out = {
        name: np.array([fn(d, kk) if name.startswith("min_k") else fn(d) for d in docs]) for name, fn in SCORES.items()
    }
    if reference is not None:
        refs = document_stats(reference, texts)
        out["reference"] = np.array([reference_score(d, r) for d, r in zip(docs, refs, strict=True)])
    return out


def llm_membership_inference(
    lm: LanguageModel,
    members: Sequence[str],
    nonmembers: Sequence[str],
    *,
    reference: LanguageModel | None = None,
    k: float = 0.2,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> LLMMIAResult:
    """Every LLM attack on ``members`` vs ``nonmembers`` documents, evaluated with bootstrap intervals."""
    if not members or not nonmembers:
        raise InvalidParameterError(
            "The 'members' and 'nonmembers' parameters of llm_membership_inference must be non-empty. "
            f"Got {len(members)} and {len(nonmembers)} instead."
        )
    texts = [*members, *nonmembers]
    y = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    scores = score_documents(lm, texts, reference, k)
    metrics = {n: evaluate_scores(s, y, n_bootstrap=n_bootstrap, seed=seed) for n, s in scores.items()}
    return LLMMIAResult(metrics, scores, y)
