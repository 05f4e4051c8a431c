"""Fidelity: total-variation distance between real and synthetic k-way marginals.

For a set S of k columns, with p and q the normalised histograms of the real and synthetic rows over
the cells of S, ``TVD_S = 1/2 sum_cells |p - q|`` (in [0, 1]). The k-way score is the mean of
``TVD_S`` over all k-subsets S of the columns (or ``max_marginals`` of them drawn at random, seeded),
the statistic AIM's and MST's papers report as workload error (McKenna et al. 2022, Sec. 6).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from privlab._validation import check_int
from privlab.errors import InvalidParameterError
from privlab.synth.table import Table


def histogram(table: Table, cols: Sequence[int]) -> np.ndarray:
    """Normalised histogram of ``table`` over the cells of columns ``cols`` (flattened)."""
    sizes = [table.domain.sizes[j] for j in cols]
    flat = np.ravel_multi_index(tuple(table.codes[:, j] for j in cols), sizes)
    counts = np.bincount(flat, minlength=int(np.prod(sizes))).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def marginal_tvd(real: Table, synthetic: Table, cols: Sequence[int]) -> float:
    """TVD between the real and synthetic marginals on ``cols``."""
    return float(0.5 * np.abs(histogram(real, cols) - histogram(synthetic, cols)).sum())


def mean_tvd(real: Table, synthetic: Table, k: int, max_marginals: int | None = None, seed: int = 0) -> float:
    """Mean k-way marginal TVD over all (or ``max_marginals`` random) k-subsets of columns."""
    if real.domain != synthetic.domain:
        raise InvalidParameterError("The 'synthetic' parameter of mean_tvd must share the real table's domain.")
    d = len(real.domain.columns)
    check_int(k, "k", "mean_tvd", low=1, high=d)
    subsets = list(itertools.combinations(range(d), k))
    if max_marginals is not None and len(subsets) > max_marginals:
        pick = np.random.default_rng(seed).choice(len(subsets), max_marginals, replace=False)
        subsets = [subsets[i] for i in sorted(pick)]
    return float(np.mean([marginal_tvd(real, synthetic, s) for s in subsets]))


def fidelity(
    real: Table, synthetic: Table, ways: Sequence[int] = (1, 2, 3), max_marginals: int = 100
) -> dict[str, float]:
    """``{"tvd_1way": ..., "tvd_2way": ..., "tvd_3way": ...}``."""
    return {f"tvd_{k}way": mean_tvd(real, synthetic, k, max_marginals) for k in ways}
