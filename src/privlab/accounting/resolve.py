"""The one resolver of "a noise multiplier, or a target epsilon to calibrate one" for DP-SGD.

``make_private``, the audits, the pipeline and the CLI all ask the user for exactly one of the two;
they all call :func:`resolve_noise_multiplier`, so the rule and its error message are the same
everywhere (the CLI passes its flag names, e.g. ``--noise-multiplier``).
"""

from __future__ import annotations

from collections.abc import Callable

from privlab._validation import check_real
from privlab.accounting.core import calibrate_noise
from privlab.errors import InvalidParameterError

NAMES = ("noise_multiplier", "target_epsilon")


def resolve_noise_multiplier(
    noise_multiplier: float | None,
    target_epsilon: float | None,
    *,
    sample_rate: float,
    steps: int | None,
    delta: float,
    owner: str,
    accountant: str = "pld",
    calibrate: Callable[[float], float] | None = None,
    names: tuple[str, str] = NAMES,
    steps_name: str = "'steps'",
) -> float:
    """The noise multiplier sigma of a DP-SGD run from exactly one of ``noise_multiplier`` / ``target_epsilon``.

    A given ``noise_multiplier`` is checked (>= 0) and returned; a ``target_epsilon`` (> 0) is turned
    into the smallest sigma whose epsilon after ``steps`` Poisson-sampled steps at ``sample_rate`` is at
    most the target (:func:`~privlab.accounting.calibrate_noise`), or by ``calibrate(target_epsilon)``
    for another sampling scheme (e.g. fixed-size batches). ``names`` / ``steps_name`` are what the
    caller's user typed (parameter or flag names; ``steps_name`` quoted, e.g. ``"'epochs' (or 'steps')"``),
    used in the error messages.
    """
    nm_name, eps_name = names
    if (noise_multiplier is None) == (target_epsilon is None):
        raise InvalidParameterError(
            f"Exactly one of '{nm_name}' and '{eps_name}' of {owner} must be given. "
            f"Got {nm_name}={noise_multiplier!r}, {eps_name}={target_epsilon!r} instead."
        )
    if noise_multiplier is not None:
        return check_real(noise_multiplier, nm_name, owner, low=0.0)
    eps = check_real(target_epsilon, eps_name, owner, low=0.0, low_open=True)
    if not steps:
        raise InvalidParameterError(
            f"The {steps_name} parameter of {owner} must be given with '{eps_name}' (the noise is calibrated "
            f"to that many steps). Got {steps!r} instead."
        )
    if calibrate is not None:
        return calibrate(eps)
    return calibrate_noise(eps, sample_rate, steps, delta, accountant)


__all__ = ["resolve_noise_multiplier"]
