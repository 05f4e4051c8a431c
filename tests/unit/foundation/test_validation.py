"""The boundary checks' messages describe exactly the interval they accept."""

from __future__ import annotations

import math

import pytest

from privlab._validation import check_real
from privlab.errors import InvalidParameterError


def test_rejected_infinity_is_an_open_end_in_the_message() -> None:
    with pytest.raises(InvalidParameterError, match=r"range \(0\.0, inf\)\. Got inf instead"):
        check_real(math.inf, "timeout", "MPCConfig", low=0.0, low_open=True)
    with pytest.raises(InvalidParameterError, match=r"range \(-inf, 1\.0\]\. Got -inf"):
        check_real(-math.inf, "x", "f", high=1.0)


def test_accepted_infinity_is_a_closed_end() -> None:
    assert check_real(math.inf, "x", "f", low=0.0, allow_inf=True) == math.inf
    with pytest.raises(InvalidParameterError, match=r"range \[0\.0, inf\]\. Got -1"):
        check_real(-1, "x", "f", low=0.0, allow_inf=True)
