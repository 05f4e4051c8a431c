"""Evaluation of a synthetic release: fidelity, utility, membership and attribute inference, DCR."""

from privlab.synth.evaluation.dcr import dcr
from privlab.synth.evaluation.fidelity import fidelity, histogram, marginal_tvd, mean_tvd
from privlab.synth.evaluation.mia import (
    ShadowMIAResult,
    aitchison_aitken_log_density,
    domias,
    outlier_rows,
    release_features,
    shadow_mia,
)
from privlab.synth.evaluation.reconstruction import attribute_inference, reconstruct
from privlab.synth.evaluation.utility import utility

__all__ = [
    "ShadowMIAResult",
    "aitchison_aitken_log_density",
    "attribute_inference",
    "dcr",
    "domias",
    "fidelity",
    "histogram",
    "marginal_tvd",
    "mean_tvd",
    "outlier_rows",
    "reconstruct",
    "release_features",
    "shadow_mia",
    "utility",
]
