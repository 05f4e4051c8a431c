"""Synthetic membership signals with a known effect: controls for attack tests, no training needed.

Model k's logits on example n: ``z_c ~ N(0, 1)`` for every class, plus, on the true label,
``d_n + effect * IN_kn + e_kn`` with a per-example difficulty ``d_n ~ N(0, 2^2)`` and per-model
noise ``e_kn ~ N(0, 0.5^2)``. With ``effect = 0`` no attack can beat chance; with ``effect > 0``
attacks that calibrate per example (reference attacks) beat a global threshold (LOSS), because
the difficulty varies more across examples than membership moves a single one.
"""

from __future__ import annotations

import numpy as np

from privlab._validation import check_int, check_real
from privlab.attacks.signals import Signals


def synthetic_signals(
    n: int = 400, k: int = 16, effect: float = 2.0, seed: int = 0, classes: int = 4
) -> tuple[Signals, np.ndarray, Signals, np.ndarray]:
    """(reference Signals (k, n), reference mask (k, n), target Signals (1, n), target membership (n,))."""
    check_int(n, "n", "synthetic_signals", low=2)
    check_int(k, "k", "synthetic_signals", low=1)
    check_int(classes, "classes", "synthetic_signals", low=2)
    check_real(effect, "effect", "synthetic_signals")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    difficulty = rng.normal(0, 2, n)
    mask = rng.random((k + 1, n)) < 0.5

    def logits(in_row: np.ndarray) -> np.ndarray:  # (n, classes)
        z = rng.normal(0, 1, (n, classes))
        z[np.arange(n), labels] += difficulty + effect * in_row + rng.normal(0, 0.5, n)
        return z

    all_logits = np.stack([logits(mask[j]) for j in range(k + 1)])  # (k + 1, n, classes)
    ref, tgt = Signals.from_logits(all_logits[1:], labels), Signals.from_logits(all_logits[:1], labels)
    return ref, mask[1:], tgt, mask[0]
