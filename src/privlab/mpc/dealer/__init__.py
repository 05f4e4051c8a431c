"""Trusted dealer of correlated randomness (Beaver triples, truncation and comparison material).

In-process: ``DealerCore`` + ``LocalLink``; separate process: ``dealer.remote`` (gloo rank 2).
"""

from privlab.mpc.dealer.core import DealerCore, LocalLink, Provider
from privlab.mpc.dealer.material import Field, Spec, make_spec

__all__ = ["DealerCore", "Field", "LocalLink", "Provider", "Spec", "make_spec"]
