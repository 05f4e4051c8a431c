"""Attribute inference by linear reconstruction from released marginals (Annamalai, Gadotti & Rocher
2024, "A Linear Reconstruction Approach for Attribute Inference Attacks against Synthetic Data").

The attacker knows the quasi-identifiers (every column but the binary ``secret``) of the n rows of a
dataset and wants their secret bits s in {0, 1}^n. Each 3-way query "QI a = u, QI b = v, secret = 1"
(and each 2-way "QI a = u, secret = 1") is a linear function of s: ``A_q . s`` where ``A_q`` marks the
rows whose known QIs match. The synthetic data answers every query approximately (its matching
fraction times n). The attack solves the box-constrained least squares ``min ||A s - b||^2`` over
``s in [0, 1]^n`` (``scipy.optimize.lsq_linear``) and predicts 1 for the ``round(n r)`` rows with the
largest ``s_i``, where r is the release's share of secret = 1 (least squares spreads mass over
ambiguous rows, so a fixed 1/2 threshold under-predicts the minority value).

Controls: the *prior* predicts every row's secret as the synthetic data's majority value; the
*non-member control* runs the same attack on rows of the population that were not in the training
set, so ``accuracy(members) - accuracy(control)`` is what the release leaks about its own records
beyond what it says about the population (Annamalai et al. report accuracy against such baselines).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import lsq_linear

from privlab.errors import InvalidParameterError
from privlab.synth.table import Table


def _queries(known: Table, synthetic: Table, secret: int, positive: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    qi = [j for j in range(len(known.domain.columns)) if j != secret]
    hit = synthetic.codes[:, secret] == positive
    rows, b = [], []
    for k in (1, 2):
        for cols in itertools.combinations(qi, k):
            sizes = [known.domain.sizes[j] for j in cols]
            key_known = np.ravel_multi_index(tuple(known.codes[:, j] for j in cols), sizes)
            key_syn = np.ravel_multi_index(tuple(synthetic.codes[:, j] for j in cols), sizes)
            syn_pos = np.bincount(key_syn[hit], minlength=int(np.prod(sizes))) / len(synthetic)
            for cell in np.unique(key_known):
                rows.append(np.flatnonzero(key_known == cell))
                b.append(syn_pos[cell] * len(known))
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    a = sparse.csr_matrix((np.ones(indptr[-1]), np.concatenate(rows), indptr), shape=(len(rows), len(known)))
    return a, np.asarray(b)


def reconstruct(known: Table, synthetic: Table, secret: str) -> np.ndarray:
    """Estimated secret bits in [0, 1] for the rows of ``known`` (their secret column is not used)."""
    j = known.domain.index(secret)
    if known.domain.sizes[j] != 2:
        raise InvalidParameterError(
            f"The 'secret' parameter of reconstruct must name a binary column. Got {secret!r} with "
            f"{known.domain.sizes[j]} values instead."
        )
    a, b = _queries(known, synthetic, j, 1)
    return np.asarray(lsq_linear(a, b, bounds=(0.0, 1.0), lsmr_tol="auto", max_iter=100).x)


def predict_bits(scores: np.ndarray, positive_rate: float) -> np.ndarray:
    """The ``round(n * positive_rate)`` highest-scoring rows are predicted 1 (the rate is the release's)."""
    k = round(len(scores) * positive_rate)
    out = np.zeros(len(scores), dtype=bool)
    out[np.argsort(-scores, kind="stable")[:k]] = True
    return out


def attribute_inference(members: Table, control: Table, synthetic: Table, secret: str) -> dict[str, Any]:
    """Reconstruction accuracy on the training rows, on a non-member control, and the prior's."""
    j = members.domain.index(secret)
    truth_m, truth_c = members.codes[:, j] == 1, control.codes[:, j] == 1
    rate = float((synthetic.codes[:, j] == 1).mean())
    acc_m = float((predict_bits(reconstruct(members, synthetic, secret), rate) == truth_m).mean())
    acc_c = float((predict_bits(reconstruct(control, synthetic, secret), rate) == truth_c).mean())
    majority = rate > 0.5
    prior = float((truth_m == majority).mean())
    return {
        "secret": secret,
        "accuracy_members": acc_m,
        "accuracy_control": acc_c,
        "accuracy_prior": prior,
        "advantage_over_control": acc_m - acc_c,
        "advantage_over_prior": acc_m - prior,
    }
