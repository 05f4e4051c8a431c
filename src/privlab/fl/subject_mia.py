"""Subject-level membership inference against a federated global model (Suri, Kanani, Marathe & Evans
2022, "Subject Membership Inference Attacks in Federated Learning").

The question is not whether one record was used but whether a *subject* (a client, a person)
took part. The attacker holds examples of each candidate subject and the final global model, and
scores a subject by how well the model fits its examples: ``score = -mean_i loss(x_i, y_i)`` (a
subject-level LOSS attack; Suri et al. also count examples below a loss threshold, which ranks
subjects the same way when the number of examples per subject is fixed). Members are the
clients that were part of the federation; non-members hold data from the same distribution that
never reached it. Metrics come from :func:`privlab.attacks.evaluate_scores` (AUC, TPR at low FPR,
bootstrap intervals).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from privlab.attacks import AttackMetrics, evaluate_scores
from privlab.data import ArrayDataset
from privlab.errors import InvalidParameterError


@torch.no_grad()
def subject_scores(model: nn.Module, subjects: Sequence[ArrayDataset]) -> np.ndarray:
    """Minus the mean cross-entropy of ``model`` on each subject's examples (higher: more likely a member)."""
    if not subjects:
        raise InvalidParameterError("The 'subjects' parameter of subject_scores must be non-empty. Got 0 subjects.")
    model.eval()
    out = []
    for i, s in enumerate(subjects):
        if len(s) == 0:
            raise InvalidParameterError(f"The 'subjects' parameter of subject_scores has an empty subject at {i}.")
        out.append(-float(F.cross_entropy(model(s.x), s.y)))
    return np.asarray(out)


def subject_membership_attack(
    model: nn.Module, members: Sequence[ArrayDataset], nonmembers: Sequence[ArrayDataset], *, seed: int = 0
) -> AttackMetrics:
    """Subject-level LOSS attack: score every member and non-member subject, then evaluate."""
    scores = subject_scores(model, [*members, *nonmembers])
    labels = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    return evaluate_scores(scores, labels, seed=seed)
