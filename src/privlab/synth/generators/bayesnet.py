"""Non-private baseline: a Bayesian network of degree k fitted to exact counts.

The greedy structure search of PrivBayes (Zhang et al. 2017, Alg. 4) without its noise: columns are
added one at a time, each with the parent set (at most ``degree`` already-added columns) that
maximises the empirical mutual information ``I(X; Pi)``; conditional tables are exact training
frequencies (an unseen parent configuration falls back to the child's marginal), and rows are drawn
by ancestral sampling. Stadler et al. 2022 attack this non-private model as their "BayesNet"
baseline; exact conditional tables carry unique value combinations of outliers into the release.
"""

from __future__ import annotations

import itertools

import numpy as np

from privlab._validation import check_int
from privlab.synth.generators.base import FittedGenerator, Generator, register
from privlab.synth.table import Table


def _mutual_information(child: np.ndarray, parents: np.ndarray) -> float:
    joint: dict[tuple[int, int], int] = {}
    for key in zip(parents.tolist(), child.tolist(), strict=True):
        joint[key] = joint.get(key, 0) + 1
    n = len(child)
    pc = np.bincount(child) / n
    _, pinv, pcount = np.unique(parents, return_inverse=True, return_counts=True)
    pp = dict(zip(np.unique(parents).tolist(), (pcount / n).tolist(), strict=True))
    del pinv
    return float(sum(c / n * np.log((c / n) / (pp[p] * pc[x])) for (p, x), c in joint.items()))


class _FittedBayesNet(FittedGenerator):
    name = "bayesnet"

    def __init__(
        self,
        table: Table,
        epsilon: float,
        delta: float,
        order: list[tuple[int, tuple[int, ...]]],
        cpts: list[dict[int, np.ndarray]],
        marginals: list[np.ndarray],
    ) -> None:
        super().__init__(table, epsilon, delta, None)
        self.order, self.cpts, self.marginals = order, cpts, marginals

    def _key(self, rows: np.ndarray, parents: tuple[int, ...]) -> np.ndarray:
        if not parents:
            return np.zeros(len(rows), dtype=np.int64)
        return np.ravel_multi_index(tuple(rows[:, p] for p in parents), [self.domain.sizes[p] for p in parents])

    def _sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.zeros((n, len(self.domain.columns)), dtype=np.int64)
        for (child, parents), cpt, marg in zip(self.order, self.cpts, self.marginals, strict=True):
            keys = self._key(out, parents)
            for key in np.unique(keys):
                idx = np.flatnonzero(keys == key)
                p = cpt.get(int(key), marg)
                out[idx, child] = rng.choice(len(p), size=len(idx), p=p)
        return out


@register
class BayesNet(Generator):
    """Greedy degree-``degree`` Bayesian network on exact counts (no privacy; epsilon/delta ignored)."""

    name = "bayesnet"
    private = False

    def __init__(self, degree: int = 2) -> None:
        self.degree = check_int(degree, "degree", "BayesNet", low=0)

    def _fit(self, table: Table, epsilon: float, delta: float, seed: int) -> FittedGenerator:
        rng = np.random.default_rng(seed)
        d, codes, sizes = len(table.domain.columns), table.codes, table.domain.sizes
        first = int(rng.integers(d))
        order: list[tuple[int, tuple[int, ...]]] = [(first, ())]
        chosen = [first]
        while len(chosen) < d:
            best: tuple[float, int, tuple[int, ...]] = (-1.0, -1, ())
            for child in (c for c in range(d) if c not in chosen):
                for parents in itertools.combinations(chosen, min(self.degree, len(chosen))):
                    key = np.ravel_multi_index(tuple(codes[:, p] for p in parents), [sizes[p] for p in parents])
                    mi = _mutual_information(codes[:, child], key)
                    if mi > best[0]:
                        best = (mi, child, parents)
            order.append((best[1], best[2]))
            chosen.append(best[1])
        cpts, marginals = [], []
        for child, parents in order:
            marg = np.bincount(codes[:, child], minlength=sizes[child]) / len(table)
            keys = (
                np.ravel_multi_index(tuple(codes[:, p] for p in parents), [sizes[p] for p in parents])
                if parents
                else np.zeros(len(table), dtype=np.int64)
            )
            cpt = {}
            for key in np.unique(keys):
                c = np.bincount(codes[keys == key, child], minlength=sizes[child]).astype(np.float64)
                cpt[int(key)] = c / c.sum()
            cpts.append(cpt)
            marginals.append(marg)
        return _FittedBayesNet(table, epsilon, delta, order, cpts, marginals)
