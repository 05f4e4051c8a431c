"""A typed table for synthesis: every column declared (categories, or numeric bounds and bins) up front.

The domain is public knowledge, never read from the private data: a DP synthesizer that learned its
category list or value range from the data would leak them (a rare category appears in the domain
only if someone has it). Numeric values are clipped to their declared ``[low, high]`` and cut into
``bins`` equal-width bins; synthesis works on the bin codes and decodes a bin to its midpoint.

Validation (errors name the column): unknown column types, a categorical column with fewer than two
categories, numeric bounds with ``low >= high``, values outside a categorical's list, and missing
values (``None``, NaN, ``""``, ``"?"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from privlab._validation import check_int, check_real
from privlab.errors import InvalidParameterError

COLUMN_TYPES = ("categorical", "numeric")
MISSING = ("", "?")


@dataclass(frozen=True)
class Column:
    """One column: ``kind`` "categorical" (``categories``) or "numeric" (``low``, ``high``, ``bins``)."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    low: float = 0.0
    high: float = 1.0
    bins: int = 10

    def __post_init__(self) -> None:
        if self.kind not in COLUMN_TYPES:
            raise InvalidParameterError(
                f"The type of column {self.name!r} must be one of {', '.join(map(repr, COLUMN_TYPES))}. "
                f"Got {self.kind!r} instead."
            )
        if self.kind == "categorical":
            if len(self.categories) < 2 or len(set(self.categories)) != len(self.categories):
                raise InvalidParameterError(
                    f"The categories of column {self.name!r} must be at least two distinct values (a column with "
                    f"one value carries no information and breaks the marginal models). Got {list(self.categories)!r} "
                    "instead."
                )
        else:
            check_real(self.low, f"{self.name}.low", "Column")
            check_real(self.high, f"{self.name}.high", "Column")
            check_int(self.bins, f"{self.name}.bins", "Column", low=2)
            if not self.low < self.high:
                raise InvalidParameterError(
                    f"The bounds of numeric column {self.name!r} must satisfy low < high. "
                    f"Got low={self.low!r}, high={self.high!r} instead."
                )

    @property
    def size(self) -> int:
        """Number of codes (categories or bins)."""
        return len(self.categories) if self.kind == "categorical" else self.bins

    def encode(self, values: Sequence[Any]) -> np.ndarray:
        """Codes (int64) of ``values``; raises on a missing or unknown value, naming the column."""
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip() in MISSING):
                raise InvalidParameterError(
                    f"Column {self.name!r} has a missing value at row {i} ({v!r}). Drop or impute missing values "
                    "before synthesis."
                )
        if self.kind == "categorical":
            pos = {c: j for j, c in enumerate(self.categories)}
            out = np.empty(len(values), dtype=np.int64)
            for i, v in enumerate(values):
                j = pos.get(str(v))
                if j is None:
                    raise InvalidParameterError(
                        f"Column {self.name!r} has value {v!r} at row {i}, which is not one of its declared "
                        f"categories {list(self.categories)[:10]!r}{'...' if len(self.categories) > 10 else ''}."
                    )
                out[i] = j
            return out
        try:
            x = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"Column {self.name!r} is numeric but holds non-numbers: {exc}") from None
        x = np.clip(x, self.low, self.high)
        width = (self.high - self.low) / self.bins
        return np.minimum(((x - self.low) // width).astype(np.int64), self.bins - 1)

    def decode(self, codes: np.ndarray) -> list[Any]:
        """Values of ``codes``: the category, or the bin's midpoint."""
        if self.kind == "categorical":
            return [self.categories[int(c)] for c in codes]
        width = (self.high - self.low) / self.bins
        return [float(self.low + (int(c) + 0.5) * width) for c in codes]

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"name": self.name, "type": "categorical", "categories": list(self.categories)}
        return {"name": self.name, "type": "numeric", "low": self.low, "high": self.high, "bins": self.bins}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Column:
        """Build from ``{"name", "type", ...}`` (the YAML form); errors name the column."""
        name = str(d.get("name", "?"))
        kind = d.get("type")
        allowed = {"categorical": {"name", "type", "categories"}, "numeric": {"name", "type", "low", "high", "bins"}}
        if kind not in allowed:
            raise InvalidParameterError(
                f"The type of column {name!r} must be one of {', '.join(map(repr, COLUMN_TYPES))}. "
                f"Got {kind!r} instead."
            )
        extra = sorted(set(d) - allowed[str(kind)])
        if extra:
            raise InvalidParameterError(f"Column {name!r} ({kind}) has unknown keys {extra}.")
        if kind == "categorical":
            return cls(name, "categorical", tuple(str(c) for c in d.get("categories", ())))
        for key in ("low", "high"):
            if key not in d:
                raise InvalidParameterError(f"Numeric column {name!r} must declare '{key}' (public bounds).")
        return cls(name, "numeric", low=d["low"], high=d["high"], bins=d.get("bins", 10))


@dataclass(frozen=True)
class Domain:
    """The ordered columns of a table."""

    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(names) < 2 or len(set(names)) != len(names):
            raise InvalidParameterError(
                f"The 'columns' parameter of Domain must list at least two uniquely named columns. Got {names} instead."
            )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(c.size for c in self.columns)

    def index(self, name: str) -> int:
        if name not in self.names:
            raise InvalidParameterError(f"Unknown column {name!r}; the domain has {list(self.names)}.")
        return self.names.index(name)

    def to_dict(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.columns]

    @classmethod
    def from_dicts(cls, cols: Sequence[Mapping[str, Any]]) -> Domain:
        return cls(tuple(Column.from_dict(c) for c in cols))


@dataclass(frozen=True)
class Table:
    """Encoded rows: ``codes[i, j]`` is row i's code in column j of ``domain``."""

    domain: Domain
    codes: np.ndarray

    def __post_init__(self) -> None:
        c = self.codes
        d = len(self.domain.columns)
        if c.ndim != 2 or c.shape[1] != d or not np.issubdtype(c.dtype, np.integer):
            raise InvalidParameterError(
                f"The 'codes' parameter of Table must be an integer array of shape (n, {d}). "
                f"Got {c.dtype} {c.shape} instead."
            )
        if len(c):
            bad = (c < 0) | (c >= np.array(self.domain.sizes))
            if bad.any():
                j = int(np.argwhere(bad)[0, 1])
                raise InvalidParameterError(
                    f"Column {self.domain.names[j]!r} has codes outside [0, {self.domain.sizes[j]})."
                )

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @classmethod
    def from_columns(cls, data: Mapping[str, Sequence[Any]], domain: Domain) -> Table:
        """Encode raw column values (every domain column must be present, of equal length)."""
        missing = [n for n in domain.names if n not in data]
        if missing:
            raise InvalidParameterError(f"Column {missing[0]!r} of the domain is not in the data.")
        lengths = {n: len(data[n]) for n in domain.names}
        if len(set(lengths.values())) != 1:
            raise InvalidParameterError(f"Columns must have equal lengths. Got {lengths} instead.")
        codes = np.stack([c.encode(list(data[c.name])) for c in domain.columns], axis=1)
        return cls(domain, codes.astype(np.int64))

    def to_columns(self) -> dict[str, list[Any]]:
        """Decoded values per column."""
        return {c.name: c.decode(self.codes[:, j]) for j, c in enumerate(self.domain.columns)}

    def subset(self, rows: np.ndarray | Sequence[int]) -> Table:
        return Table(self.domain, self.codes[np.asarray(rows, dtype=np.int64)])

    def onehot(self) -> np.ndarray:
        """(n, sum of column sizes) float32 one-hot encoding."""
        blocks = [np.eye(s, dtype=np.float32)[self.codes[:, j]] for j, s in enumerate(self.domain.sizes)]
        return np.concatenate(blocks, axis=1)
