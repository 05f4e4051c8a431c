"""RMIA (Zarifzadeh et al. 2024, "Low-Cost High-Power Membership Inference Attacks", ICML).

Pairwise likelihood ratio of ``x`` against population points ``z`` (Eq. 4-5 of the paper):

    LR(x, z) = [Pr(x | theta) / Pr(x)] / [Pr(z | theta) / Pr(z)],
    score(x) = Pr_z[ LR(x, z) >= gamma ],

where ``Pr(. | theta)`` is the target's softmax probability of the true label and ``Pr(.)`` is its
average over reference models theta'. Online, ``Pr(x)`` averages all reference models (IN and
OUT for ``x``). Offline, only OUT models exist, and ``Pr(x)`` is approximated from their mean
``Pr_OUT(x)`` by the paper's linear interpolation (Sec. 4, "offline"; Appendix B.2.2)

    Pr(x) = 0.5 * ((1 + a) * Pr_OUT(x) + (1 - a)),

applied alike to ``x`` and ``z``; ``a`` is tuned by attacking one reference model with the others
(grid 0, 0.1, ..., 1, best AUC), as the authors' code does, or fixed by the caller. ``gamma = 1``
by default (the authors' code; the paper explores gamma in [1, 2]). Without population signals,
the target's own query points serve as ``z``. For a fixed ``z`` set the score is an increasing
function of ``Pr(x | theta) / Pr(x)``; ties among scores are broken by that ratio.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from privlab._validation import check_real
from privlab.attacks.base import check_reference, check_same_examples, fitted, register, target_row
from privlab.attacks.metrics import auc
from privlab.attacks.signals import Signals
from privlab.errors import InvalidParameterError

A_GRID = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
DEFAULT_A = 0.3  # used when fewer than 2 reference models leave nothing to tune a on


def _pr_marginal(prob: np.ndarray, out: np.ndarray, online: bool, a: float) -> np.ndarray:
    """Pr(.) (N,) from reference probabilities (K, N): the mean (online) or the interpolated OUT mean (offline)."""
    if online:
        return np.asarray(prob.mean(0), dtype=np.float64)
    n_out = out.sum(0)
    p_out = (prob * out).sum(0) / np.maximum(n_out, 1)
    if (n_out == 0).any():  # IN every reference model: use the mean OUT probability of all examples
        p_out[n_out == 0] = prob[out].mean() if out.any() else 0.5
    return np.asarray(0.5 * ((1 + a) * p_out + (1 - a)), dtype=np.float64)


def rmia_scores(p_x: np.ndarray, pr_x: np.ndarray, p_z: np.ndarray, pr_z: np.ndarray, gamma: float) -> np.ndarray:
    """Fraction of z with LR(x, z) >= gamma, for every x (sort + binary search, O((N + M) log M))."""
    ratio_x = p_x / np.maximum(pr_x, 1e-300)
    ratio_z = np.sort(p_z / np.maximum(pr_z, 1e-300))
    # LR(x, z) >= gamma  <=>  ratio_z <= ratio_x / gamma
    count = np.searchsorted(ratio_z, ratio_x / gamma, side="right") / len(ratio_z)
    tie_break = (rankdata(ratio_x) - 1) / len(ratio_x) / (2 * len(ratio_z))
    return np.asarray(count + tie_break, dtype=np.float64)


class RMIA:
    """Zarifzadeh et al. 2024 RMIA, online (IN and OUT references) or offline (OUT only, parameter ``a``)."""

    needs_reference = True

    def __init__(self, online: bool = False, a: float | str = "auto", gamma: float = 1.0) -> None:
        self.online = bool(online)
        if a != "auto":
            check_real(a, "a", "RMIA", low=0.0, high=1.0)
        self.a = a
        self.gamma = check_real(gamma, "gamma", "RMIA", low=0.0, low_open=True)
        self.name = "rmia_online" if self.online else "rmia_offline"
        self.a_used: float | None = None
        self._fit: tuple[np.ndarray, np.ndarray] | None = None  # Pr(x) (N,), Pr(z) (M,) or empty

    def _tune_a(self, prob: np.ndarray, m: np.ndarray, pop: np.ndarray | None) -> float:
        """Attack reference model 0 with the others; the grid value of a with the best AUC."""
        if m.shape[0] < 2 or m[0].all() or not m[0].any():
            return DEFAULT_A
        best, best_auc = DEFAULT_A, -1.0
        for a in A_GRID:
            pr_x = _pr_marginal(prob[1:], ~m[1:], False, a)
            if pop is None:
                p_z, pr_z = prob[0], pr_x
            else:
                p_z, pr_z = pop[0], _pr_marginal(pop[1:], np.ones_like(pop[1:], bool), False, a)
            value = auc(rmia_scores(prob[0], pr_x, p_z, pr_z, self.gamma), m[0])
            if value > best_auc:
                best, best_auc = float(a), value
        return best

    def fit(self, reference: Signals | None, mask: np.ndarray | None, population: Signals | None = None) -> RMIA:
        m = check_reference(reference, mask, "RMIA")
        prob = np.asarray(reference.prob, dtype=np.float64)  # type: ignore[union-attr]  # (K, N)
        pop = None if population is None else np.asarray(population.prob, dtype=np.float64)  # (K, M)
        if pop is not None and pop.shape[0] != prob.shape[0]:
            raise InvalidParameterError(
                f"The 'population' parameter of RMIA.fit must hold the same {prob.shape[0]} reference models. "
                f"Got {pop.shape[0]} instead."
            )
        a = DEFAULT_A if self.online else (self._tune_a(prob, m, pop) if self.a == "auto" else float(self.a))
        self.a_used = None if self.online else a
        pr_x = _pr_marginal(prob, ~m, self.online, a)
        pr_z = np.empty(0) if pop is None else _pr_marginal(pop, np.ones_like(pop, bool), self.online, a)
        self._fit = (pr_x, pr_z)
        return self

    def score(self, target: Signals, population: Signals | None = None) -> np.ndarray:
        pr_x, pr_z = fitted(self._fit, "RMIA")
        p_x = np.asarray(target.prob[target_row(target, "RMIA")], dtype=np.float64)
        check_same_examples(p_x.shape[0], pr_x.shape[0], "RMIA")
        if len(pr_z) == 0:
            return rmia_scores(p_x, pr_x, p_x, pr_x, self.gamma)
        if population is None or population.n_models != 1 or population.n_examples != len(pr_z):
            raise InvalidParameterError(
                f"The 'population' parameter of RMIA.score must be the target's signals on the {len(pr_z)} population "
                "points used in fit (K = 1). Got "
                f"{None if population is None else (population.n_models, population.n_examples)} instead."
            )
        return rmia_scores(p_x, pr_x, np.asarray(population.prob[0], dtype=np.float64), pr_z, self.gamma)


register("rmia_offline", lambda **kw: RMIA(online=False, **kw))
register("rmia_online", lambda **kw: RMIA(online=True, **kw))
