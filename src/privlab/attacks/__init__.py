"""Membership-inference attacks: signals, LOSS, Attack-R, LiRA, RMIA, metrics, results and plots.

Pipeline: :func:`compute_signals` of a target and of reference models (see :mod:`privlab.train`),
:func:`run_attacks` fits every attack on the references, scores the target and evaluates it
(:class:`MIAResult`: AUC, balanced accuracy, TPR at low FPR with bootstrap intervals, per-example
scores), :func:`plot_roc` draws them on log-log axes. Each attack is one module registered in
:data:`ATTACKS`; add your own with :func:`register`.
"""

from privlab.attacks import attack_r, lira, loss, rmia  # noqa: F401  (register the attacks)
from privlab.attacks.attack_r import AttackR
from privlab.attacks.base import ATTACKS, Attack, get_attack, register
from privlab.attacks.lira import LiRA
from privlab.attacks.loss import LossAttack
from privlab.attacks.metrics import FPRS, AttackMetrics, auc, evaluate_scores, roc_curve
from privlab.attacks.plot import plot_roc
from privlab.attacks.results import DEFAULT_ATTACKS, MIAResult, run_attacks
from privlab.attacks.rmia import RMIA
from privlab.attacks.signals import AUGMENTATIONS, PopulationSignals, Signals, compute_signals

__all__ = [
    "ATTACKS",
    "AUGMENTATIONS",
    "DEFAULT_ATTACKS",
    "FPRS",
    "RMIA",
    "Attack",
    "AttackMetrics",
    "AttackR",
    "LiRA",
    "LossAttack",
    "MIAResult",
    "PopulationSignals",
    "Signals",
    "auc",
    "compute_signals",
    "evaluate_scores",
    "get_attack",
    "plot_roc",
    "register",
    "roc_curve",
    "run_attacks",
]
