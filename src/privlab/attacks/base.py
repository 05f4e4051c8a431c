"""The shape every membership-inference attack has, and the registry that holds them.

An attack is fitted on reference-model signals (K, N) and the (K, N) membership mask of those
models, then scores a target model's signals: one real score per example, higher = more likely a
member. Attacks that need no reference models (LOSS) ignore them; RMIA also takes signals on
population points z (of the reference models at fit time, of the target at score time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from privlab._validation import check_choice
from privlab.attacks.signals import Signals
from privlab.errors import InvalidParameterError


@runtime_checkable
class Attack(Protocol):
    """Fit on references, score a target (higher = member)."""

    name: str
    needs_reference: bool

    def fit(self, reference: Signals | None, mask: np.ndarray | None, population: Signals | None = None) -> Attack:
        """Learn from reference signals (K, N) and mask (K, N); ``population``: reference signals on z (K, M)."""
        ...

    def score(self, target: Signals, population: Signals | None = None) -> np.ndarray:
        """(N,) scores for the target's signals (K = 1); ``population``: target signals on z (1, M)."""
        ...


ATTACKS: dict[str, Callable[..., Attack]] = {}


def register(name: str, factory: Callable[..., Attack]) -> None:
    """Add an attack factory to :data:`ATTACKS` under ``name`` (names are unique)."""
    if name in ATTACKS:
        raise InvalidParameterError(
            f"The 'name' parameter of register must be a new attack name. Got {name!r} instead."
        )
    ATTACKS[name] = factory


def get_attack(name: str, **kwargs: Any) -> Attack:
    """A fresh, unfitted instance of the registered attack ``name``."""
    check_choice(name, "name", "get_attack", ATTACKS)
    return ATTACKS[name](**kwargs)


def target_row(target: Signals, owner: str) -> int:
    """Validate that ``target`` holds exactly one model; return 0 (its row)."""
    if target.n_models != 1:
        raise InvalidParameterError(
            f"The 'target' parameter of {owner}.score must hold the signals of one model (K = 1). "
            f"Got K = {target.n_models} instead; use Signals.select([k])."
        )
    return 0


def check_same_examples(n_target: int, n_reference: int, owner: str) -> None:
    """Refuse target signals over a different number of examples than the references were fitted on."""
    if n_target != n_reference:
        raise InvalidParameterError(
            f"The 'target' parameter of {owner}.score must hold signals on the {n_reference} examples the "
            f"reference models were fitted on, in the same order. Got {n_target} examples instead."
        )


def check_reference(reference: Signals | None, mask: np.ndarray | None, owner: str, min_models: int = 1) -> np.ndarray:
    """Validate reference signals and their (K, N) bool mask; return the mask as an array."""
    if reference is None or mask is None:
        raise InvalidParameterError(
            f"The 'reference' parameter of {owner}.fit must be reference-model signals with their mask. "
            "Got None instead."
        )
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != reference.loss.shape:
        raise InvalidParameterError(
            f"The 'mask' parameter of {owner}.fit must be a bool array of shape {reference.loss.shape}. "
            f"Got {m.dtype} {m.shape} instead."
        )
    if m.shape[0] < min_models:
        raise InvalidParameterError(
            f"The 'reference' parameter of {owner}.fit must hold at least {min_models} models. "
            f"Got {m.shape[0]} instead."
        )
    return m


T = TypeVar("T")


def fitted(state: T | None, owner: str) -> T:
    """Return the state ``fit`` stored, or raise if ``score`` is called before ``fit``."""
    if state is None:
        raise InvalidParameterError(f"{owner}.score was called before fit; call fit(reference, mask) first.")
    return state
