"""Empirical privacy audits: epsilon lower bounds with a stated confidence.

* :func:`audit_multi_run` -- many trainings with and without a canary (Jagielski et al. 2020;
  Nasr et al. 2021, 2023), Clopper-Pearson bounds, optional Gaussian-DP conversion.
* :func:`audit_one_run` / :func:`audit_one_run_grid` -- one training with m random canaries
  (Steinke, Nasr & Jagielski 2023).
* :func:`audit_gdp` -- a Gaussian-DP mu from the ROC of canary scores, as epsilon at delta.

Every audit returns an :class:`AuditResult`. The statistics live in :mod:`privlab.audit.stats`
(pure numpy/scipy); :mod:`privlab.audit.mechanisms` holds reference mechanisms with known epsilon.
"""

from privlab.audit.mechanisms import GaussianMechanism, RandomizedResponse
from privlab.audit.stats import (
    AuditResult,
    audit_gdp,
    audit_multi_run,
    audit_one_run,
    audit_one_run_grid,
    estimate_gdp_mu,
    gdp_epsilon,
    one_run_epsilon,
    one_run_p_value,
)

__all__ = [
    "AuditResult",
    "GaussianMechanism",
    "RandomizedResponse",
    "audit_gdp",
    "audit_multi_run",
    "audit_one_run",
    "audit_one_run_grid",
    "estimate_gdp_mu",
    "gdp_epsilon",
    "one_run_epsilon",
    "one_run_p_value",
]

# DP-SGD training audits (white-box one-run, black-box one-run, white-box multi-run, optimizer probes),
# each taking one AuditSpec (what was trained).
from privlab.audit.blackbox import audit_dp_training_blackbox
from privlab.audit.dp_training import DPTrainingAudit, audit_dp_training
from privlab.audit.multi_run_training import audit_dp_training_multi_run
from privlab.audit.optimizer_canaries import audit_dp_optimizer
from privlab.audit.spec import AuditSpec

__all__ += [
    "AuditSpec",
    "DPTrainingAudit",
    "audit_dp_optimizer",
    "audit_dp_training",
    "audit_dp_training_blackbox",
    "audit_dp_training_multi_run",
]
