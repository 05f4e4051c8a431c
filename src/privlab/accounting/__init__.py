"""Privacy accounting for DP-SGD (no torch import).

What a mechanism *did* is a :class:`~privlab.accounting.ledger.PrivacyLedger` of immutable
entries; *how to bound it* is an accountant (``"pld"``, the default and tightest, or ``"rdp"``),
both from Google's ``dp-accounting`` package.

>>> from privlab.accounting import epsilon, calibrate_noise
>>> eps = epsilon(noise_multiplier=1.1, sample_rate=0.004266, steps=14040, delta=1e-5)
>>> round(eps, 2)
2.38
"""

from privlab.accounting.core import (
    ACCOUNTANTS,
    calibrate_noise,
    dpsgd_event,
    epsilon,
    epsilon_from_event,
    make_accountant,
)
from privlab.accounting.ledger import LEDGER_SCHEMA_VERSION, LedgerEntry, PrivacyLedger
from privlab.accounting.resolve import resolve_noise_multiplier

__all__ = [
    "ACCOUNTANTS",
    "LEDGER_SCHEMA_VERSION",
    "LedgerEntry",
    "PrivacyLedger",
    "calibrate_noise",
    "dpsgd_event",
    "epsilon",
    "epsilon_from_event",
    "make_accountant",
    "resolve_noise_multiplier",
]
