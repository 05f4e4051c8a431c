"""ROC metrics against naive threshold loops; bootstrap intervals; validation."""

from __future__ import annotations

import numpy as np
import pytest

from privlab.attacks import auc, evaluate_scores, roc_curve
from privlab.errors import InvalidParameterError


def naive(scores, y, fpr_target):
    best_tpr, best_bal = 0.0, 0.0
    for t in np.r_[np.inf, np.unique(scores)]:
        pred = scores >= t
        tpr, fpr = pred[y].mean(), pred[~y].mean()
        best_bal = max(best_bal, (tpr + 1 - fpr) / 2)
        if fpr <= fpr_target:
            best_tpr = max(best_tpr, tpr)
    pos, neg = scores[y], scores[~y]
    pairwise = ((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean()
    return best_tpr, best_bal, pairwise


@pytest.mark.parametrize("seed", range(3))
def test_against_naive(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.4
    s = np.round(rng.normal(y * 0.8, 1), 1)  # rounding creates ties
    m = evaluate_scores(s, y, n_bootstrap=20, fprs=(0.1, 0.01))
    for f in (0.1, 0.01):
        tpr, bal, pw = naive(s, y, f)
        assert m.tpr_at_fpr[f] == pytest.approx(tpr)
        assert m.balanced_accuracy == pytest.approx(bal)
        assert m.auc == pytest.approx(pw)
    assert m.auc_ci[0] <= m.auc <= m.auc_ci[1]
    fpr, tpr = roc_curve(s, y)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)
    assert auc(s, y) == pytest.approx(np.trapezoid(tpr, fpr))


def test_perfect_and_reversed():
    y = np.array([True] * 50 + [False] * 50)
    s = y.astype(float)
    m = evaluate_scores(s, y, n_bootstrap=10)
    assert m.auc == 1 and m.tpr_at_fpr[0.0001] == 1 and m.balanced_accuracy == 1
    assert evaluate_scores(-s, y, n_bootstrap=0).auc == 0


def test_validation():
    with pytest.raises(InvalidParameterError, match="'membership' parameter of evaluate_scores"):
        evaluate_scores(np.zeros(3), np.ones(3, bool))
    with pytest.raises(InvalidParameterError, match="'scores'"):
        evaluate_scores(np.array([0.0, np.nan]), np.array([True, False]))
