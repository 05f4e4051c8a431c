"""Plant canaries in a training corpus at controlled repetition counts, reproducibly from a seed.

A :class:`Canary` is one sentence ``prefix + secret + suffix`` inserted ``repetitions`` times at
random line boundaries of the corpus (Carlini et al. 2019 insert each canary 1, 4, 16, 64 ... times
and plot exposure against the count). Digit secrets come from
:func:`privlab.data.secret_canaries`; PII sentences (names, emails, phone and SSN-like numbers)
from :mod:`privlab.llm.pii`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from privlab._validation import check_int
from privlab.data import secret_canaries
from privlab.errors import InvalidParameterError
from privlab.llm.config import DEFAULT_REPETITIONS


@dataclass(frozen=True)
class Canary:
    """One planted sentence: ``text = prefix + secret + suffix``, inserted ``repetitions`` times."""

    prefix: str
    secret: str
    suffix: str
    repetitions: int
    kind: str = "digits"

    @property
    def text(self) -> str:
        return self.prefix + self.secret + self.suffix

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PlantedCorpus:
    """``text`` (the corpus with every copy of every canary inserted) and the canaries.

    ``line_canary[j]`` is the index in ``canaries`` of the canary whose copy is line j of ``text``,
    or -1 for a line of the original corpus (what secret- and document-level DP group by).
    """

    text: str
    canaries: tuple[Canary, ...]
    original_length: int
    line_canary: tuple[int, ...] = ()

    def by_repetitions(self) -> dict[int, list[Canary]]:
        out: dict[int, list[Canary]] = {}
        for c in self.canaries:
            out.setdefault(c.repetitions, []).append(c)
        return dict(sorted(out.items()))


def _check_reps(repetitions: Sequence[int], owner: str) -> tuple[int, ...]:
    reps = tuple(repetitions)
    if not reps:
        raise InvalidParameterError(f"The 'repetitions' parameter of {owner} must be non-empty. Got () instead.")
    for r in reps:
        check_int(r, "repetitions", owner, low=1)
    return reps


def digit_canaries(
    repetitions: Sequence[int] = DEFAULT_REPETITIONS,
    per_level: int = 2,
    n_digits: int = 6,
    seed: int = 0,
    prefix: str = "my secret number is ",
    suffix: str = ".",
) -> list[Canary]:
    """``per_level`` distinct random ``n_digits`` secrets for each repetition count."""
    reps = _check_reps(repetitions, "digit_canaries")
    check_int(per_level, "per_level", "digit_canaries", low=1)
    sc = secret_canaries(len(reps) * per_level, seed, prefix + "{}" + suffix, n_digits)
    return [Canary(prefix, d, suffix, reps[i // per_level], "digits") for i, d in enumerate(sc.digits)]


def insert_canaries(text: str, canaries: Sequence[Canary], seed: int = 0) -> PlantedCorpus:
    """Insert ``c.repetitions`` copies of each canary as its own line, at uniformly random line breaks."""
    check_int(seed, "seed", "insert_canaries", low=0)
    lines = text.split("\n")
    copies = [(k, c.text) for k, c in enumerate(canaries) for _ in range(c.repetitions)]
    rng = np.random.default_rng(seed)
    slots = np.sort(rng.integers(0, len(lines) + 1, len(copies)))  # insert before line slots[j]
    order = rng.permutation(len(copies))
    out: list[str] = []
    owner: list[int] = []
    j = 0
    for i in range(len(lines) + 1):
        while j < len(slots) and slots[j] == i:
            k, copy = copies[order[j]]
            out.append(copy)
            owner += [k] * (copy.count("\n") + 1)
            j += 1
        if i < len(lines):
            out.append(lines[i])
            owner.append(-1)
    return PlantedCorpus("\n".join(out), tuple(canaries), len(text), tuple(owner))
