"""Machine unlearning: remove rows from a trained model, and measure whether the removal worked.

One entry point, :func:`unlearn` ``(model, forget, retain, config) -> UnlearnResult``, over a
registry of methods (:data:`METHODS`), one module each:

* exact: ``retrain`` (from scratch on the retain set), ``sisa`` (Bourtoule et al. 2021);
* approximate: ``finetune``, ``gradient_ascent``, ``neggrad_plus`` and ``scrub`` (Kurmanji et
  al. 2023), ``salun`` (Fan et al. 2024);
* certified: ``certified`` (Guo et al. 2020) for L2-regularised logistic regression.

Each method says how the original model must be trained (``get_method(name).train``: plain
:func:`privlab.train.train_model` for most, SISA's sharded training, the noise-perturbed convex
fit of certified removal). :mod:`privlab.unlearn.evaluation` measures a method against the model
retrained without the forget set: memorisation, PrivLeak and U-LiRA, utility, cost, scaling with
the forget-set size and drift over a sequence of removal requests.
"""

from privlab.unlearn import (  # noqa: F401  (register the methods)
    certified,
    finetune,
    gradient_ascent,
    neggrad_plus,
    retrain,
    salun,
    scrub,
    sisa,
)
from privlab.unlearn.base import (
    KINDS,
    METHODS,
    ForgetRetainOverlapWarning,
    ForgetSplit,
    Method,
    UnlearnConfig,
    UnlearnResult,
    attach_factory,
    forget_split,
    get_method,
    register,
    reinit,
    unlearn,
)
from privlab.unlearn.certified import train_certified
from privlab.unlearn.sisa import SISAEnsemble, load_sisa, train_sisa

__all__ = [
    "KINDS",
    "METHODS",
    "ForgetRetainOverlapWarning",
    "ForgetSplit",
    "Method",
    "SISAEnsemble",
    "UnlearnConfig",
    "UnlearnResult",
    "attach_factory",
    "forget_split",
    "get_method",
    "load_sisa",
    "register",
    "reinit",
    "train_certified",
    "train_sisa",
    "unlearn",
]
