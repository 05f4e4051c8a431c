"""LOSS attack (Yeom et al. 2018, "Privacy Risk in Machine Learning", threshold on the loss).

Score ``s(x) = -l(theta, x)``: training examples tend to have lower loss. Needs no reference models;
one global threshold for all examples, which is why it fails at low false-positive rates on
examples that are easy (low loss whether or not they were trained on).
"""

from __future__ import annotations

import numpy as np

from privlab.attacks.base import register, target_row
from privlab.attacks.signals import Signals


class LossAttack:
    """Yeom et al. 2018: score = -loss."""

    name = "loss"
    needs_reference = False

    def fit(
        self, reference: Signals | None = None, mask: np.ndarray | None = None, population: Signals | None = None
    ) -> LossAttack:
        return self

    def score(self, target: Signals, population: Signals | None = None) -> np.ndarray:
        return np.asarray(-target.loss[target_row(target, "LossAttack")], dtype=np.float64)


register("loss", LossAttack)
