"""Utility: train on synthetic, test on real (TSTR), against train on real (TRTR).

A logistic regression on the one-hot features of every other column predicts ``label`` (binary:
code 1 vs the rest is the positive class for a two-category label); the same model trained on the
real training table gives the reference. Accuracy and AUC (:func:`privlab.attacks.auc`) are on the
real test table. A synthetic table with a single label value yields a constant classifier.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from privlab.attacks import auc
from privlab.synth.table import Table


def _features(table: Table, label: int) -> tuple[np.ndarray, np.ndarray]:
    keep = [j for j in range(len(table.domain.columns)) if j != label]
    blocks = [np.eye(table.domain.sizes[j], dtype=np.float32)[table.codes[:, j]] for j in keep]
    return np.concatenate(blocks, axis=1), table.codes[:, label] == table.domain.sizes[label] - 1


def _score(train: Table, test: Table, label: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    x, y = _features(train, label)
    xt, yt = _features(test, label)
    if y.all() or not y.any():
        p = np.full(len(xt), float(y.mean()))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = LogisticRegression(max_iter=2000, C=1.0).fit(x, y).predict_proba(xt)[:, 1]
    return {"accuracy": float(((p >= 0.5) == yt).mean()), "auc": auc(p, yt)}


def utility(real_train: Table, synthetic: Table, real_test: Table, label: str) -> dict[str, Any]:
    """TSTR and TRTR accuracy/AUC for predicting ``label`` and their gaps (real minus synthetic)."""
    j = real_train.domain.index(label)
    tstr, trtr = _score(synthetic, real_test, j), _score(real_train, real_test, j)
    return {
        "label": label,
        "synthetic": tstr,
        "real": trtr,
        "accuracy_gap": trtr["accuracy"] - tstr["accuracy"],
        "auc_gap": trtr["auc"] - tstr["auc"],
    }
