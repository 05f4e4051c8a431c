"""Boundary checks with one uniform error message (after scikit-learn's parameter validation)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from privlab.errors import InvalidParameterError


def _fail(name: str, owner: str, expected: str, value: Any) -> InvalidParameterError:
    return InvalidParameterError(f"The '{name}' parameter of {owner} must be {expected}. Got {value!r} instead.")


def check_real(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the interval; raise a named error otherwise."""
    # an infinite end that is rejected is an open end: "(0.0, inf)" rather than "(0.0, inf]"
    lb = "(" if low_open or (math.isinf(low) and not allow_inf) else "["
    rb = ")" if high_open or (math.isinf(high) and not allow_inf) else "]"
    expected = f"a float in the range {lb}{low}, {high}{rb}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numpy as np

            if not isinstance(value, np.integer | np.floating):
                raise _fail(name, owner, expected, value)
        except ImportError:  # pragma: no cover
            raise _fail(name, owner, expected, value) from None
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise _fail(name, owner, expected, value)
    if v < low or v > high or (low_open and v == low) or (high_open and v == high):
        raise _fail(name, owner, expected, value)
    return v


def check_int(value: Any, name: str, owner: str, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer in ``[low, high]``; raise a named error otherwise."""
    lo = "-inf" if low is None else str(low)
    hi = "inf" if high is None else str(high)
    expected = f"an int in the range [{lo}, {hi}]"
    try:
        import numpy as np

        int_types: tuple[type, ...] = (int, np.integer)
    except ImportError:  # pragma: no cover
        int_types = (int,)
    if isinstance(value, bool) or not isinstance(value, int_types):
        raise _fail(name, owner, expected, value)
    v = int(value)  # type: ignore[call-overload]
    if (low is not None and v < low) or (high is not None and v > high):
        raise _fail(name, owner, expected, value)
    return v


def check_bool(value: Any, name: str, owner: str) -> bool:
    """Return ``value`` if it is a bool (not merely truthy: "no" is truthy); raise a named error otherwise."""
    if not isinstance(value, bool):
        raise _fail(name, owner, "a bool", value)
    return value


def check_choice(value: Any, name: str, owner: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; raise a named error otherwise."""
    options = list(choices)
    if value not in options:
        raise _fail(name, owner, "one of " + ", ".join(repr(c) for c in options), value)
    return str(value)
