"""The exceptions privlab raises. Every message names the parameter, the value and what was expected."""

from __future__ import annotations


class PrivlabError(Exception):
    """Base class of every error privlab raises on purpose."""


class InvalidParameterError(PrivlabError, ValueError):
    """A parameter is outside its documented domain.

    The message follows one shape: ``The 'delta' parameter of epsilon must be a float in the range
    (0, 1). Got 1.5 instead.``
    """


class DataUnavailableError(PrivlabError, FileNotFoundError):
    """A dataset's files are not on this machine; the message names what provides them."""


class UnsupportedModuleError(PrivlabError, TypeError):
    """A module cannot be used by a private mechanism (DP-SGD, MPC); the message says why and how to fix it."""


class CorruptArtifactError(PrivlabError, ValueError):
    """A checkpoint, ledger, config or cached result failed validation and was refused."""


class ConfigError(PrivlabError, ValueError):
    """A configuration file or object is invalid; the message names the offending key."""


class MPCError(PrivlabError, RuntimeError):
    """A multi-party computation failed (a party or the dealer died, timed out, or misbehaved)."""


class DistributedTrainingError(PrivlabError, RuntimeError):
    """A rank of a data-parallel DP-SGD training failed or left; the others stop instead of waiting."""


class PrivacyViolationError(PrivlabError, RuntimeError):
    """A private mechanism was used in a way that would break its guarantee (e.g. a parameter that
    would be updated with a raw, unclipped gradient); the message says what happened and how to fix it."""


class NonFiniteGradientError(PrivlabError, FloatingPointError):
    """A DP-SGD step's noisy gradient sum is NaN or infinite (an example's loss or gradient was not finite,
    or the weights diverged); the step was refused before it was recorded or applied."""


class MPCRangeError(InvalidParameterError):
    """A value of a multi-party computation would leave the fixed-point ring or an operation's
    valid domain (a product past ``2^(62 - 2f)``, a comparison past ``2^(cmp_bits - 1 - f)``, a
    reciprocal of a non-positive number, ...); the message names the operation or layer and the range."""
