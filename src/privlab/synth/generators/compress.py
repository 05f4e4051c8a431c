"""MST's domain compression (McKenna, Miklau & Sheldon 2021, "Winning the NIST Contest", MST's compression step).

After the noisy 1-way marginals y_a = M_a(D) + N(0, sigma^2 I) are released, every category i of
attribute a with ``y_a[i] < 3 sigma`` is treated as rare and the rare categories are merged into one
new category. The 2-way measurements and the graphical model then live on the compressed domain,
whose marginals have far fewer cells (less noise per useful cell, smaller models). The map depends
on the data only through step 1's noisy output, so it is post-processing: no budget is spent, and a
row still changes one cell of every compressed marginal by 1 (sensitivity 1 stays).

The released 1-way measurement is re-expressed on the compressed domain without re-measuring: the
kept cells keep their noisy values, and the merged cell's value is the sum of the k rare noisy values,
``y_m = x_m + Z`` with ``Z ~ N(0, k sigma^2)``. Dividing by sqrt(k) gives a measurement with the
same noise std sigma as the other cells, of the query ``x_m / sqrt(k)`` (:func:`compressed_oneway`):
the least-squares fit then weighs it by its true variance (generalised least squares by whitening).

Decompression (:meth:`AttributeCompression.decompress`) maps a synthetic row's merged category back
to one of its k original values: uniformly, as in the paper, or ("noisy") with probabilities
proportional to the rare categories' noisy counts clipped at 0 (also post-processing of step 1).
Fewer than two rare categories are left as they are: merging one category is a relabelling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from privlab._validation import check_choice, check_real
from privlab.errors import InvalidParameterError

DECOMPRESS = ("uniform", "noisy")
THRESHOLD_SIGMAS = 3.0


@dataclass(frozen=True)
class AttributeCompression:
    """One attribute's map from its ``size`` original codes to ``compressed_size`` codes.

    ``kept[j]`` is the original code of compressed code j (in original order); ``merged`` are the
    original codes sharing the last compressed code ``len(kept)`` (empty: nothing merged), drawn back
    with probabilities ``weights`` (summing to 1) on decompression.
    """

    size: int
    kept: tuple[int, ...]
    merged: tuple[int, ...]
    weights: tuple[float, ...]

    @property
    def compressed_size(self) -> int:
        """Number of categories after compression: len(kept) + 1 if anything was merged."""
        return len(self.kept) + (1 if self.merged else 0)

    @property
    def lookup(self) -> np.ndarray:
        """Shape (size,): the compressed code of every original code."""
        out = np.full(self.size, len(self.kept), dtype=np.int64)
        out[list(self.kept)] = np.arange(len(self.kept))
        return out

    def compress(self, codes: np.ndarray) -> np.ndarray:
        """Original codes (any shape) -> compressed codes."""
        return self.lookup[np.asarray(codes, dtype=np.int64)]

    def decompress(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Compressed codes (1-D) -> original codes; a merged code draws one of ``merged`` by ``weights``."""
        c = np.asarray(codes, dtype=np.int64)
        if c.size and (c.min() < 0 or c.max() >= self.compressed_size):
            raise InvalidParameterError(
                f"The 'codes' parameter of AttributeCompression.decompress must lie in [0, {self.compressed_size}). "
                f"Got values in [{c.min()}, {c.max()}]."
            )
        out = np.empty_like(c)
        is_merged = c == len(self.kept)
        out[~is_merged] = np.asarray(self.kept, dtype=np.int64)[c[~is_merged]] if self.kept else 0
        if self.merged and is_merged.any():
            out[is_merged] = rng.choice(np.asarray(self.merged), size=int(is_merged.sum()), p=np.asarray(self.weights))
        return out


def low_categories(noisy: np.ndarray, sigma: float, threshold: float = THRESHOLD_SIGMAS) -> np.ndarray:
    """Boolean mask of the categories whose noisy count is below ``threshold * sigma`` (the paper's 3 sigma)."""
    s = check_real(sigma, "sigma", "low_categories", low=0.0, low_open=True)
    t = check_real(threshold, "threshold", "low_categories", low=0.0)
    return np.asarray(noisy, dtype=float) < t * s


def compress_attribute(
    noisy: np.ndarray, sigma: float, decompress: str = "uniform", threshold: float = THRESHOLD_SIGMAS
) -> AttributeCompression:
    """The compression of one attribute from its noisy 1-way marginal (shape (size,)) and its noise std.

    Merges the categories of :func:`low_categories` when there are at least two of them.
    ``decompress="uniform"`` draws a merged category back uniformly (paper); ``"noisy"`` with
    probability ``max(y_i, 0) / sum_j max(y_j, 0)`` over the merged i (uniform if all are <= 0).
    """
    check_choice(decompress, "decompress", "compress_attribute", DECOMPRESS)
    y = np.asarray(noisy, dtype=float)
    if y.ndim != 1 or y.size < 1:
        raise InvalidParameterError(
            f"The 'noisy' parameter of compress_attribute must be a non-empty 1-D array. Got shape {y.shape}."
        )
    low = low_categories(y, sigma, threshold)
    if low.sum() < 2:
        return AttributeCompression(y.size, tuple(range(y.size)), (), ())
    merged = np.flatnonzero(low)
    w = np.clip(y[merged], 0.0, None) if decompress == "noisy" else np.ones(merged.size)
    w = w / w.sum() if w.sum() > 0 else np.full(merged.size, 1.0 / merged.size)
    return AttributeCompression(
        y.size, tuple(int(i) for i in np.flatnonzero(~low)), tuple(int(i) for i in merged), tuple(float(p) for p in w)
    )


def compressed_oneway(noisy: np.ndarray, comp: AttributeCompression) -> tuple[np.ndarray, np.ndarray]:
    """The released 1-way measurement re-expressed on the compressed domain, whitened to std sigma per cell.

    Returns ``(y_c, q)`` with ``y_c = q * [y_kept..., sum(y_merged)]`` and ``q = [1, ..., 1, 1/sqrt(k)]``:
    ``y_c = q * M_a(D_compressed) + N(0, sigma^2 I)``, so the measurement's query is ``q * marginal``.
    Shapes (compressed_size,). No new noise: a function of the noisy 1-way vector only.
    """
    y = np.asarray(noisy, dtype=float)
    if y.shape != (comp.size,):
        raise InvalidParameterError(
            f"The 'noisy' parameter of compressed_oneway must have shape ({comp.size},). Got {y.shape}."
        )
    q = np.ones(comp.compressed_size)
    vals = y[list(comp.kept)]
    if comp.merged:
        q[-1] = 1.0 / math.sqrt(len(comp.merged))
        vals = np.append(vals, y[list(comp.merged)].sum())
    return q * vals, q


def compress_domain(
    noisy: Mapping[str, np.ndarray], sigma: float, decompress: str = "uniform", threshold: float = THRESHOLD_SIGMAS
) -> dict[str, AttributeCompression]:
    """:func:`compress_attribute` for every attribute's noisy 1-way marginal (all measured at std ``sigma``)."""
    return {a: compress_attribute(y, sigma, decompress, threshold) for a, y in noisy.items()}


def minimum_variance_total(sums: list[tuple[float, float]]) -> float:
    """Inverse-variance combination of unbiased estimates (s_i, v_i) of the row count, at least 1.

    T = sum_i (s_i / v_i) / sum_i (1 / v_i), the minimum-variance unbiased combination of independent
    estimates. A noisy marginal over c cells at std sigma gives s = sum(y), v = c sigma^2 (also after
    compression: the merged cell's sum is the sum of the rare noisy cells). ``mbi`` uses the same
    estimator but only on identity queries, which the whitened compressed 1-ways are not.
    """
    if not sums:
        raise InvalidParameterError("The 'sums' parameter of minimum_variance_total must not be empty.")
    s = np.array([e for e, _ in sums], dtype=float)
    v = np.array([check_real(var, "sums", "minimum_variance_total", low=0.0, low_open=True) for _, var in sums])
    return max(1.0, float((s / v).sum() / (1.0 / v).sum()))
