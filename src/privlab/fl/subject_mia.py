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
from privlab.fl.config import FedConfig


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


def label_matched_subjects(
    pool: ArrayDataset, members: Sequence[ArrayDataset], *, seed: int = 0
) -> list[ArrayDataset]:
    """One non-member subject per member, drawn from ``pool`` without replacement with the member's
    label counts.

    Under a non-IID split a member's examples are label-skewed; a non-member drawn uniformly would
    differ from it in label mix alone, and the attack would score that shift rather than
    membership (the member/non-member distribution shift MIMIR warns of for LLMs). Matching the
    label counts removes it.
    """
    gen = np.random.default_rng(seed)
    y = pool.y.numpy()
    free = {int(c): list(gen.permutation(np.flatnonzero(y == c))) for c in np.unique(y)}
    out = []
    for i, m in enumerate(members):
        idx: list[int] = []
        labels, counts = np.unique(m.y.numpy(), return_counts=True)
        for c, k in zip(labels.tolist(), counts.tolist(), strict=True):
            avail = free.get(int(c), [])
            if len(avail) < k:
                raise InvalidParameterError(
                    f"The 'pool' parameter of label_matched_subjects has too few examples of label {c} for "
                    f"member subject {i} (needs {k}, {len(avail)} left): give a larger held-out pool or fewer subjects."
                )
            idx += avail[:k]
            del avail[:k]
        out.append(pool.subset(torch.as_tensor(sorted(idx))))
    return out


def subject_mia_experiment(
    cfg: FedConfig, state: dict[str, torch.Tensor], *, max_subjects: int = 100, seed: int = 0
) -> AttackMetrics:
    """Subject-level LOSS attack on the final global model of a federated run of ``cfg``.

    Members: up to ``max_subjects`` of the federation's clients (their partitions of the training
    data). Non-members: label-matched subjects (:func:`label_matched_subjects`) from data no client
    held: the training split beyond ``cfg.train_size``, else the test split beyond the
    ``cfg.eval_size`` rows the server evaluates on. For Shakespeare, the speaking roles ranked right
    after the federation's (people who never joined).
    """
    from privlab.fl.client import build_fl_model, client_data

    n = min(cfg.num_clients, max_subjects)
    members = [client_data(cfg, i) for i in range(n)]
    if cfg.dataset == "shakespeare":
        nonmembers = _unseen_roles(cfg, n)
    else:
        nonmembers = label_matched_subjects(_held_out_pool(cfg, sum(len(m) for m in members), n), members, seed=seed)
    model = build_fl_model(cfg)
    model.load_state_dict(state)
    return subject_membership_attack(model, members, nonmembers, seed=seed)


def _unseen_roles(cfg: FedConfig, n: int) -> list[ArrayDataset]:
    """Shakespeare: the ``n`` speaking roles ranked right after the federation's, capped like a client."""
    from privlab.data.speakers import load_shakespeare_speakers
    from privlab.fl.client import SPEAKER_SEQ_LEN
    from privlab.fl.partition import user_partition

    corpus = load_shakespeare_speakers(cfg.num_clients + n, seq_len=SPEAKER_SEQ_LEN)
    parts = user_partition(corpus.train_users)[cfg.num_clients :]
    return [corpus.train.subset(p[: cfg.train_size // cfg.num_clients]) for p in parts]


def _held_out_pool(cfg: FedConfig, need: int, n: int) -> ArrayDataset:
    """Rows no client held: the training split beyond ``train_size``, else the test split beyond ``eval_size``."""
    from privlab.data import load_dataset

    train = load_dataset(cfg.dataset, "train")
    if len(train) - cfg.train_size >= need:
        return train.subset(torch.arange(cfg.train_size, len(train)))
    test = load_dataset(cfg.dataset, "test")
    if len(test) - cfg.eval_size < need:
        raise InvalidParameterError(
            f"subject_mia_experiment needs {need} held-out examples for {n} non-member subjects, but "
            f"{cfg.dataset} has {len(train) - cfg.train_size} beyond train_size and "
            f"{len(test) - cfg.eval_size} beyond eval_size; lower train_size, eval_size or max_subjects."
        )
    return test.subset(torch.arange(cfg.eval_size, len(test)))
