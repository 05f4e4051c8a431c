"""privlab: privacy-preserving machine learning you can measure.

Pillars (each a subpackage): ``accounting`` (privacy accountants, no torch), ``dp`` (DP-SGD),
``mpc`` (secure multi-party computation), ``attacks`` (membership inference), ``audit``
(empirical epsilon lower bounds), ``unlearn``, ``report`` and ``pipeline``. ``data`` and
``models`` hold offline datasets and small reference architectures.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
