"""Registered generators: AIM and MST (smartnoise-synth / mbi), a DP-SGD VAE, a Gaussian copula baseline."""

from privlab.synth.generators import bayesnet, copula, dpvae, marginal  # noqa: F401  (register)
from privlab.synth.generators.base import GENERATORS, FittedGenerator, Generator, get_generator, register

__all__ = ["GENERATORS", "FittedGenerator", "Generator", "get_generator", "register"]
