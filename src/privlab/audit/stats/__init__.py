"""Pure numpy/scipy audit statistics (no torch): one module per method, shared math in ``_common``."""

from privlab.audit.stats._common import (
    clopper_pearson_lower,
    clopper_pearson_upper,
    eps_delta_bound,
    gdp_delta,
    gdp_epsilon,
    gdp_mu_from_rates,
)
from privlab.audit.stats.gdp import audit_gdp, estimate_gdp_mu
from privlab.audit.stats.multi_run import audit_multi_run, bounds_per_threshold
from privlab.audit.stats.one_run import (
    audit_one_run,
    audit_one_run_grid,
    count_correct_guesses,
    one_run_epsilon,
    one_run_max_epsilon,
    one_run_p_value,
)
from privlab.audit.stats.result import AuditResult

__all__ = [
    "AuditResult",
    "audit_gdp",
    "audit_multi_run",
    "audit_one_run",
    "audit_one_run_grid",
    "bounds_per_threshold",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "count_correct_guesses",
    "eps_delta_bound",
    "estimate_gdp_mu",
    "gdp_delta",
    "gdp_epsilon",
    "gdp_mu_from_rates",
    "one_run_epsilon",
    "one_run_max_epsilon",
    "one_run_p_value",
]
