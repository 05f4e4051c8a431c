"""Distance to closest record (DCR), with what it cannot see.

For each synthetic row, the Hamming distance to its closest training row and to its closest row of
an equally large holdout from the same population. Reported: the median DCR to training rows, the
share of exact copies of training rows, and the share of synthetic rows strictly closer to training
than to holdout (``closer_to_train``; about half of the non-tied rows for a release that does not
copy, more when it does).

Blind spots (why privlab never reports DCR alone): DCR is not a privacy guarantee and a "good" DCR
does not imply privacy. (1) It looks only at whole-record similarity, so it misses leakage through
aggregate statistics: a release can sit far from every training record and still let the linear
reconstruction attack infer a secret column, or the shadow-model attack detect an outlier's
presence. (2) Exact copies of common records are expected even from a perfect DP generator (many
people share them) and are not a leak; copies of unique records are, and DCR does not tell them
apart. (3) It is a heuristic with no threat model: thresholds are arbitrary and it gives no bound on
any attacker's success (Ganev & De Cristofaro 2023, "On the Inadequacy of Similarity-based Privacy
Metrics").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from privlab.synth.table import Table


def _closest(points: Table, data: Table, chunk: int = 512) -> np.ndarray:
    out = np.empty(len(points), dtype=np.int64)
    for s in range(0, len(points), chunk):
        diff = (points.codes[s : s + chunk, None, :] != data.codes[None, :, :]).sum(axis=2)
        out[s : s + chunk] = diff.min(axis=1)
    return out


def dcr(synthetic: Table, train: Table, holdout: Table) -> dict[str, Any]:
    """DCR summary of ``synthetic`` against ``train`` and an equally sized ``holdout``."""
    to_train, to_hold = _closest(synthetic, train), _closest(synthetic, holdout)
    untied = to_train != to_hold
    return {
        "median_dcr_train": float(np.median(to_train)),
        "median_dcr_holdout": float(np.median(to_hold)),
        "exact_copies": float((to_train == 0).mean()),
        "closer_to_train": float((to_train[untied] < to_hold[untied]).mean()) if untied.any() else 0.5,
    }
