"""Configuration of an MPC run: fixed-point precision, comparison range, timeouts."""

from __future__ import annotations

import math
from dataclasses import dataclass

from privlab._validation import check_bool, check_int, check_real
from privlab.errors import InvalidParameterError

MAX_SECONDS = 1e9
"""Largest ``timeout`` and ``deadline`` (about 31 years): longer ones overflow the thread and gloo
timers (``OverflowError`` in a local run, an instant timeout over gloo). Use ``deadline=None`` for no limit."""


@dataclass(frozen=True)
class MPCConfig:
    """What every party must agree on before a run.

    ``frac_bits``: fractional bits of the fixed-point encoding (values are ``round(x * 2**f)`` in
    Z/2^64). ``cmp_bits``: comparisons assume ``|x| < 2**(cmp_bits - 1)`` in ring units, i.e.
    ``|x| < 2**(cmp_bits - 1 - frac_bits)`` as reals (default 2^23, about 8.4 million).
    ``cmp_tree``: the fan-in of each level of the comparison's AND tree, leaves first (each 2 to 4):
    the comparison splits ``cmp_bits - 1`` bits into ``prod(cmp_tree)`` digits and combines them
    in ``len(cmp_tree)`` rounds (``protocols.compare``). ``timeout``: the **per-message** limit, seconds a party
    waits for one message from a peer or the dealer before raising ``MPCError`` (a dead or
    silent peer); it does not limit the length of a healthy run. ``deadline``: the **whole-run**
    limit in seconds, counted from the start of the protocol (``None``, the default: no limit);
    when it passes, every party stops with an ``MPCError`` that names the deadline.
    ``range_checks``: protocols called directly on shares verify that their inputs lie in their
    valid domains (see ``privlab.mpc.checks``; the check runs when a value is revealed and
    reveals only the count of out-of-range elements); ``private_inference`` proves the ranges
    in plaintext instead and runs without them.
    """

    frac_bits: int = 16
    cmp_bits: int = 40
    cmp_tree: tuple[int, ...] = (2, 2, 3)
    timeout: float = 60.0
    deadline: float | None = None
    range_checks: bool = True

    def __post_init__(self) -> None:
        # numpy scalars pass the checks; the fields hold the Python values the checks return (JSON,
        # timedelta and the handshake need those). Frozen: hence object.__setattr__.
        owner = "MPCConfig"
        object.__setattr__(self, "frac_bits", check_int(self.frac_bits, "frac_bits", owner, low=1, high=30))
        object.__setattr__(
            self, "cmp_bits", check_int(self.cmp_bits, "cmp_bits", owner, low=self.frac_bits + 2, high=64)
        )
        tree = self.cmp_tree
        if not isinstance(tree, tuple) or not tree or any(isinstance(k, bool) or not isinstance(k, int) for k in tree):
            raise InvalidParameterError(
                f"The 'cmp_tree' parameter of {owner} must be a non-empty tuple of ints. Got {tree!r} instead."
            )
        if any(k < 2 or k > 4 for k in tree) or self.cmp_digits > self.cmp_bits - 1:
            raise InvalidParameterError(
                f"The 'cmp_tree' parameter of {owner} must hold fan-ins from 2 to 4 whose product (the digits) "
                f"is at most cmp_bits - 1 = {self.cmp_bits - 1}. Got {tree!r} instead."
            )
        object.__setattr__(
            self, "timeout", check_real(self.timeout, "timeout", owner, low=0.0, low_open=True, high=MAX_SECONDS)
        )
        if self.deadline is not None:
            deadline = check_real(self.deadline, "deadline", owner, low=0.0, low_open=True, high=MAX_SECONDS)
            object.__setattr__(self, "deadline", deadline)
        check_bool(self.range_checks, "range_checks", owner)

    @property
    def cmp_digits(self) -> int:
        """Digits of a comparison: ``prod(cmp_tree)``."""
        return math.prod(self.cmp_tree)
