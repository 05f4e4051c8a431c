"""Non-private baseline: a Gaussian copula (``copulas``' ``GaussianMultivariate``) over the coded table.

Each column's codes are mapped to (0, 1) by the frequency-interval transform (code k owns the
interval ``[F(k-1), F(k))`` of the empirical CDF, and a value is drawn uniformly inside its
interval), a Gaussian copula with uniform marginals is fitted to those scores, and samples are
mapped back through the same intervals. The intervals are the training frequencies: a category
that no training row has gets width zero, so a rare value appears in the synthetic data only if
a training record had it -- which is why this baseline leaks membership of outliers.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from privlab.synth.generators.base import FittedGenerator, Generator, register
from privlab.synth.table import Table


def _lib() -> Any:
    try:
        import pandas as pd
        from copulas.multivariate import GaussianMultivariate
        from copulas.univariate import UniformUnivariate
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            f"The copula baseline needs copulas and pandas (pip install 'privlab[synth]'): {exc}"
        ) from exc
    return pd, GaussianMultivariate, UniformUnivariate


class _FittedCopula(FittedGenerator):
    name = "copula"

    def __init__(self, table: Table, epsilon: float, delta: float, model: Any, cdfs: list[np.ndarray]) -> None:
        super().__init__(table, epsilon, delta, None)
        self.model, self.cdfs = model, cdfs

    def _sample(self, n: int, seed: int) -> np.ndarray:
        self.model.set_random_state(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u = self.model.sample(n).to_numpy()
        cols = [
            np.searchsorted(cdf, np.clip(u[:, j], 0.0, 1.0 - 1e-12), side="right") for j, cdf in enumerate(self.cdfs)
        ]
        return np.minimum(np.stack(cols, axis=1), np.array(self.domain.sizes) - 1)


@register
class GaussianCopula(Generator):
    """Gaussian copula baseline (no privacy; ``epsilon`` and ``delta`` are ignored)."""

    name = "copula"
    private = False

    def _fit(self, table: Table, epsilon: float, delta: float, seed: int) -> FittedGenerator:
        pd, GaussianMultivariate, UniformUnivariate = _lib()
        rng = np.random.default_rng(seed)
        cdfs, scores = [], []
        for j, size in enumerate(table.domain.sizes):
            counts = np.bincount(table.codes[:, j], minlength=size).astype(np.float64)
            cdf = np.cumsum(counts) / counts.sum()
            lo = np.r_[0.0, cdf[:-1]]
            c = table.codes[:, j]
            scores.append(lo[c] + rng.random(len(c)) * (cdf[c] - lo[c]))
            cdfs.append(cdf)
        frame = pd.DataFrame(np.stack(scores, axis=1), columns=[f"c{j}" for j in range(len(cdfs))])
        model = GaussianMultivariate(distribution=UniformUnivariate, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(frame)
        return _FittedCopula(table, epsilon, delta, model, cdfs)
