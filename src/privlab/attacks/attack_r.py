"""Attack-R (Ye et al. 2022, "Enhanced Membership Inference Attacks against Machine Learning Models").

Per-example threshold from reference models that did not train on ``x``: the attack flags ``x``
when the target's loss falls below the alpha-percentile of ``x``'s OUT reference losses. The score
is the fraction of OUT reference losses above the target's loss (ties count 1/2),

    s(x) = (#{k OUT: l_k(x) > l(x)} + 0.5 #{k OUT: l_k(x) = l(x)}) / #{k OUT},

so thresholding ``s >= 1 - alpha`` is the paper's test at level alpha. With K_out reference models
``s`` takes 2 K_out + 1 values; ties are broken by the LOSS order so that low-FPR operating points
are defined. The tie-break term is below ``1 / (4 K^2)`` for the largest OUT count K: two distinct
fractions ``a / (2 n1)`` and ``b / (2 n2)`` with ``n1, n2 <= K`` differ by at least ``1 / (2 K^2)``, so
the term only orders examples whose fractions are equal (a term of ``1 / (4 K)``, used before
2026-12-07, reordered about 1 pair in 1,200 when the OUT count varied per example). An example
that is IN every reference model is compared with the OUT losses of all examples (a global
threshold, as in LOSS).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from privlab.attacks.base import check_reference, check_same_examples, fitted, register, target_row
from privlab.attacks.signals import Signals


class AttackR:
    """Ye et al. 2022 Attack-R: per-example percentile of the loss among OUT reference models."""

    name = "attack_r"
    needs_reference = True

    def __init__(self) -> None:
        self._fit: tuple[np.ndarray, np.ndarray] | None = None  # reference losses (K, N), OUT mask (K, N)

    def fit(self, reference: Signals | None, mask: np.ndarray | None, population: Signals | None = None) -> AttackR:
        m = check_reference(reference, mask, "AttackR")
        self._fit = (np.asarray(reference.loss, dtype=np.float64), ~m)  # type: ignore[union-attr]
        return self

    def score(self, target: Signals, population: Signals | None = None) -> np.ndarray:
        ref, out = fitted(self._fit, "AttackR")
        loss = np.asarray(target.loss[target_row(target, "AttackR")], dtype=np.float64)  # (N,)
        check_same_examples(loss.shape[0], ref.shape[1], "AttackR")
        above = ((ref > loss) & out).sum(0) + 0.5 * ((ref == loss) & out).sum(0)
        n_out = out.sum(0)
        frac = above / np.maximum(n_out, 1)
        lonely = np.flatnonzero(n_out == 0)
        if len(lonely):  # IN every reference model: compare with the OUT losses of all examples instead
            pooled = np.sort(ref[out])
            lo = np.searchsorted(pooled, loss[lonely], side="left")
            hi = np.searchsorted(pooled, loss[lonely], side="right")
            frac[lonely] = (len(pooled) - hi + 0.5 * (hi - lo)) / max(len(pooled), 1)
        k = max(int(n_out.max()), 1)
        tie_break = (rankdata(-loss) - 1) / len(loss) / (4 * k * k)
        return np.asarray(frac + tie_break, dtype=np.float64)


register("attack_r", AttackR)
