"""The blind baseline: can members be told from non-members *without the model*?

Duan et al. 2024 ("Do Membership Inference Attacks Work on Large Language Models?") and Das et al.
2024 ("Blind Baselines Beat Membership Inference Attacks for Foundation Models") show that many
LLM membership benchmarks have members and non-members from different distributions (e.g. dates),
so a classifier on the text alone separates them and an attack's AUC measures the shift, not
memorisation. This check trains a bag-of-n-grams logistic regression (scikit-learn) on the texts
with k-fold cross-fitting and evaluates its out-of-fold decision values with
:func:`privlab.attacks.evaluate_scores`. It *fires* when the lower end of the AUC's bootstrap
interval exceeds ``threshold``: then the split is distinguishable from text alone and attack
results on it should not be read as memorisation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from privlab._validation import check_int, check_real
from privlab.attacks import AttackMetrics, evaluate_scores
from privlab.errors import InvalidParameterError


class DistributionShiftWarning(UserWarning):
    """Members and non-members are distinguishable from their text alone."""


@dataclass(frozen=True)
class BlindResult:
    """Out-of-fold metrics of the text-only classifier; ``fires`` when the split looks shifted."""

    metrics: AttackMetrics
    fires: bool
    threshold: float
    message: str


def blind_baseline(
    members: Sequence[str],
    nonmembers: Sequence[str],
    *,
    ngram_range: tuple[int, int] = (1, 2),
    folds: int = 5,
    threshold: float = 0.55,
    seed: int = 0,
    warn: bool = True,
) -> BlindResult:
    """Cross-fitted bag-of-word-n-grams logistic regression on members vs non-members."""
    check_int(folds, "folds", "blind_baseline", low=2)
    thr = check_real(threshold, "threshold", "blind_baseline", low=0.5, high=1.0)
    if min(len(members), len(nonmembers)) < folds:
        raise InvalidParameterError(
            f"The 'members' and 'nonmembers' parameters of blind_baseline must each hold at least folds={folds} "
            f"texts. Got {len(members)} and {len(nonmembers)} instead."
        )
    try:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError("The blind baseline needs scikit-learn, in the llm extra: pip install privlab[llm]") from None
    texts = np.array([*members, *nonmembers], dtype=object)
    y = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    scores = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(texts, y):
        vec = CountVectorizer(ngram_range=ngram_range, lowercase=False, token_pattern=r"(?u)\b\w+\b|[^\w\s]")
        xtr = vec.fit_transform(texts[tr])
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(xtr, y[tr])
        scores[te] = clf.decision_function(vec.transform(texts[te]))
    m = evaluate_scores(scores, y, seed=seed)
    fires = m.auc_ci[0] > thr
    msg = f"blind baseline (text only) AUC {m.auc:.3f} [{m.auc_ci[0]:.3f}, {m.auc_ci[1]:.3f}]: " + (
        f"members and non-members differ in distribution (interval above {thr}); attack AUCs on this "
        "split measure the shift, not memorisation"
        if fires
        else f"no distribution shift detected (interval not above {thr})"
    )
    if fires and warn:
        warnings.warn(msg, DistributionShiftWarning, stacklevel=2)
    return BlindResult(m, bool(fires), thr, msg)
