"""The generator interface: ``fit(table, epsilon, delta) -> FittedGenerator``; ``FittedGenerator.sample(n)``.

Every generator is registered by name in :data:`GENERATORS` (see :func:`register`); the contract test
runs over all of them. ``epsilon = inf`` asks for the generator's non-private setting (documented per
generator). A fitted generator carries the privacy ledger of what its fit released
(:class:`~privlab.accounting.zcdp.ZCDPLedger` for marginal mechanisms, the DP-SGD
:class:`~privlab.accounting.PrivacyLedger` for DP-trained models, ``None`` when nothing is private).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from privlab._validation import check_int, check_real
from privlab.accounting import PrivacyLedger
from privlab.accounting.zcdp import ZCDPLedger
from privlab.errors import InvalidParameterError
from privlab.synth.table import Table

Ledger = PrivacyLedger | ZCDPLedger


class FittedGenerator(ABC):
    """A generator fitted to one table: sample synthetic rows, read its privacy cost."""

    name: str = ""

    def __init__(self, table: Table, epsilon: float, delta: float, ledger: Ledger | None) -> None:
        self.domain = table.domain
        self.n_train = len(table)
        self.target_epsilon = epsilon
        self.delta = delta
        self.ledger = ledger

    @abstractmethod
    def _sample(self, n: int, seed: int) -> Any:
        """An (n, d) integer array of codes."""

    def sample(self, n: int, seed: int = 0) -> Table:
        """``n`` synthetic rows in the training table's domain."""
        k = check_int(n, "n", f"{type(self).__name__}.sample", low=1)
        return Table(self.domain, self._sample(k, seed).astype("int64"))

    def epsilon(self, delta: float | None = None) -> float:
        """Epsilon spent by the fit (``inf`` for a non-private fit), from the ledger."""
        if self.ledger is None:
            return math.inf
        return float(self.ledger.epsilon(delta))

    def budget(self) -> dict[str, Any]:
        """Target and accounted budget, plus the ledger's JSON form."""
        return {
            "generator": self.name,
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "epsilon": self.epsilon(),
            "ledger": None if self.ledger is None else self.ledger.to_dict(),
        }


GeneratorFactory = Callable[..., "Generator"]


class Generator(ABC):
    """Unfitted generator with its options; :meth:`fit` validates the budget and the table."""

    name: str = ""
    private: bool = True

    def fit(self, table: Table, epsilon: float, delta: float = 1e-5, *, seed: int = 0) -> FittedGenerator:
        owner = f"{type(self).__name__}.fit"
        if not isinstance(table, Table):
            raise InvalidParameterError(
                f"The 'table' parameter of {owner} must be a privlab.synth.Table. Got {type(table).__name__} instead."
            )
        if len(table) < 2:
            raise InvalidParameterError(
                f"The 'table' parameter of {owner} must have at least 2 rows. Got {len(table)}."
            )
        eps = check_real(epsilon, "epsilon", owner, low=0.0, low_open=True, allow_inf=True)
        d = check_real(delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
        check_int(seed, "seed", owner, low=0)
        return self._fit(table, eps, d, seed)

    @abstractmethod
    def _fit(self, table: Table, epsilon: float, delta: float, seed: int) -> FittedGenerator: ...


GENERATORS: dict[str, type[Generator]] = {}


def register(cls: type[Generator]) -> type[Generator]:
    """Class decorator: add a generator to :data:`GENERATORS` under ``cls.name``."""
    if not cls.name or cls.name in GENERATORS:
        raise InvalidParameterError(f"Generator name {cls.name!r} is empty or already registered.")
    GENERATORS[cls.name] = cls
    return cls


def get_generator(name: str, **options: Any) -> Generator:
    """A registered generator by name, constructed with ``options``."""
    if name not in GENERATORS:
        raise InvalidParameterError(
            f"The 'generator' parameter must be one of {', '.join(map(repr, sorted(GENERATORS)))}. "
            f"Got {name!r} instead."
        )
    try:
        return GENERATORS[name](**options)
    except TypeError as exc:
        raise InvalidParameterError(f"Bad options for generator {name!r}: {exc}") from None
