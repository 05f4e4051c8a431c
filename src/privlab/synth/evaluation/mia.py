"""Membership inference against a synthetic data release.

**Shadow-model attack on a target record** (Stadler, Oprisanu & Troncoso 2022, "Synthetic Data --
Anonymisation Groundhog Day"; the TAPAS toolbox, Houssiau et al. 2022). The attacker knows the
generator, its parameters and a population sample. It builds shadow training sets of ``train_size``
rows from the population, half of them with the target record, fits the generator on each, and
summarises every synthetic release by query features about the target: the fraction of synthetic
rows that agree with it on each column and on each pair of columns, the fraction of exact copies,
and the smallest Hamming distance to it. A logistic regression on the shadow releases' features
scores fresh releases (half with the target); :func:`privlab.attacks.evaluate_scores` gives AUC and
TPR at low FPR with bootstrap intervals over releases.

**DOMIAS** (van Breugel, Sun, Qian & van der Schaar 2023, "Membership Inference Attacks against
Synthetic Data through Overfitting Detection"): one release, many candidate records. The score of x
is the density ratio ``p_syn(x) / p_ref(x)`` between the synthetic data and reference data from the
population; overfitting puts synthetic density on training records. Densities are kernel estimates
with the Aitchison & Aitken (1976) kernel for categorical data,
``K(x, y) = prod_j ((1 - lam) if x_j = y_j else lam / (c_j - 1))``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from privlab._validation import check_int, check_real
from privlab.attacks import AttackMetrics, evaluate_scores
from privlab.errors import InvalidParameterError
from privlab.synth.generators.base import Generator
from privlab.synth.table import Table


def release_features(synthetic: Table, target: np.ndarray) -> np.ndarray:
    """Query features of one synthetic release about ``target`` (codes, shape (d,))."""
    eq = synthetic.codes == target[None, :]
    d = eq.shape[1]
    single = eq.mean(axis=0)
    pairs = np.array([(eq[:, a] & eq[:, b]).mean() for a, b in itertools.combinations(range(d), 2)])
    hamming = d - eq.sum(axis=1)
    return np.concatenate([single, pairs, [float((hamming == 0).mean()), float(hamming.min()) / d]])


def outlier_rows(table: Table, k: int) -> np.ndarray:
    """Indices of the ``k`` most outlying rows: those whose rarest value is rarest in ``table``, ties
    broken by the lowest log-likelihood under the product of the 1-way marginals (Stadler et al. 2022
    pick targets among such outliers; they are the records a release is most likely to expose)."""
    check_int(k, "k", "outlier_rows", low=1, high=len(table))
    ll = np.zeros(len(table))
    rarest = np.full(len(table), np.inf)
    for j, s in enumerate(table.domain.sizes):
        counts = np.bincount(table.codes[:, j], minlength=s)
        ll += np.log(counts[table.codes[:, j]] / len(table))
        rarest = np.minimum(rarest, counts[table.codes[:, j]])
    return np.lexsort((ll, rarest))[:k]


@dataclass(frozen=True)
class ShadowMIAResult:
    """Shadow-model attack on one target: metrics over ``n_eval`` releases."""

    target_index: int
    metrics: AttackMetrics
    generator: str
    epsilon: float

    def to_dict(self) -> dict[str, Any]:
        m = self.metrics.to_dict()
        m.pop("roc")
        return {"target_index": self.target_index, "generator": self.generator, "epsilon": self.epsilon, **m}


def _release(
    gen: Generator, population: Table, target: int, member: bool, train_size: int, eps: float, delta: float, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    others = np.delete(np.arange(len(population)), target)
    rows = rng.choice(others, train_size - 1 if member else train_size, replace=False)
    if member:
        rows = np.r_[rows, target]
    fitted = gen.fit(population.subset(rows), eps, delta, seed=seed)
    return release_features(fitted.sample(train_size, seed=seed), population.codes[target])


def shadow_mia(
    generator: Generator,
    population: Table,
    target: int,
    *,
    epsilon: float,
    delta: float = 1e-5,
    train_size: int = 1000,
    n_shadow: int = 20,
    n_eval: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> ShadowMIAResult:
    """Attack membership of ``population`` row ``target`` in the generator's training set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    owner = "shadow_mia"
    check_int(target, "target", owner, low=0, high=len(population) - 1)
    check_int(train_size, "train_size", owner, low=2, high=len(population) - 1)
    check_int(n_shadow, "n_shadow", owner, low=4)
    check_int(n_eval, "n_eval", owner, low=4)
    check_real(epsilon, "epsilon", owner, low=0.0, low_open=True, allow_inf=True)
    total = n_shadow + n_eval
    labels = np.arange(total) % 2 == 0
    feats = [
        _release(generator, population, target, bool(labels[i]), train_size, epsilon, delta, seed * 100003 + i)
        for i in tqdm(range(total), desc=f"shadow MIA ({generator.name})", disable=not progress, leave=False)
    ]
    x = np.stack(feats)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    clf.fit(x[:n_shadow], labels[:n_shadow])
    scores = clf.decision_function(x[n_shadow:])
    metrics = evaluate_scores(scores, labels[n_shadow:], fprs=(0.1,), n_bootstrap=200, seed=seed)
    return ShadowMIAResult(int(target), metrics, generator.name, float(epsilon))


def aitchison_aitken_log_density(points: Table, data: Table, lam: float = 0.2, chunk: int = 512) -> np.ndarray:
    """log of the mean Aitchison-Aitken kernel between each of ``points`` and the rows of ``data``."""
    check_real(lam, "lam", "aitchison_aitken_log_density", low=0.0, high=1.0, low_open=True, high_open=True)
    sizes = np.array(data.domain.sizes, dtype=np.float64)
    log_same, log_diff = np.log(1 - lam), np.log(lam / (sizes - 1))
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        eq = points.codes[s : s + chunk, None, :] == data.codes[None, :, :]  # (c, m, d)
        logk = np.where(eq, log_same, log_diff[None, None, :]).sum(axis=2)
        mx = logk.max(axis=1, keepdims=True)
        out[s : s + chunk] = mx[:, 0] + np.log(np.exp(logk - mx).mean(axis=1))
    return out


def domias(
    synthetic: Table,
    members: Table,
    nonmembers: Table,
    reference: Table,
    *,
    lam: float = 0.2,
    subset: np.ndarray | None = None,
    seed: int = 0,
) -> AttackMetrics:
    """DOMIAS scores ``log p_syn(x) - log p_ref(x)`` of members vs non-members, evaluated.

    ``subset`` (bool over the concatenation members + non-members) restricts the evaluation, e.g. to
    outliers; the reference must be disjoint from both candidate sets.
    """
    if not (synthetic.domain == members.domain == nonmembers.domain == reference.domain):
        raise InvalidParameterError("The tables passed to domias must share one domain.")
    cand = Table(members.domain, np.concatenate([members.codes, nonmembers.codes]))
    y = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    score = aitchison_aitken_log_density(cand, synthetic, lam) - aitchison_aitken_log_density(cand, reference, lam)
    if subset is not None:
        score, y = score[subset], y[subset]
    return evaluate_scores(score, y, fprs=(0.1, 0.01), n_bootstrap=200, seed=seed)
