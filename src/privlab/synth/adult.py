"""Adult (census income) as a synthesis table: a declared domain and rows without missing values.

Numeric columns use public bounds (age 17-90, hours-per-week 1-99, from the UCI documentation) cut
into equal-width bins; categorical columns use the category lists of the UCI training file. Rows with
a missing value (``?``) in a selected column are dropped (about 7% of rows, in workclass and
occupation); ``income`` is ">50K" / "<=50K".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from privlab._validation import check_choice, check_int
from privlab.data.adult import load_adult_raw
from privlab.errors import InvalidParameterError
from privlab.synth.table import Column, Domain, Table

NUMERIC_BOUNDS = {"age": (17.0, 90.0, 8), "hours-per-week": (1.0, 99.0, 6), "education-num": (1.0, 16.0, 8)}
DEFAULT_COLUMNS = (
    "age",
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "hours-per-week",
    "income",
)
LABEL = "income"


def adult_domain(columns: Sequence[str] = DEFAULT_COLUMNS, data_dir: str | Path | None = None) -> Domain:
    """The declared domain of the selected Adult columns."""
    raw = load_adult_raw("train", data_dir)
    cols = []
    for name in columns:
        if name not in raw:
            raise InvalidParameterError(f"The 'columns' parameter of adult_domain has unknown column {name!r}.")
        if name in NUMERIC_BOUNDS:
            lo, hi, bins = NUMERIC_BOUNDS[name]
            cols.append(Column(name, "numeric", low=lo, high=hi, bins=bins))
        elif name in ("fnlwgt", "capital-gain", "capital-loss"):
            raise InvalidParameterError(f"Column {name!r} has no declared bounds in privlab.synth.adult; drop it.")
        else:
            cols.append(Column(name, "categorical", tuple(sorted(set(raw[name]) - {"?"}))))
    return Domain(tuple(cols))


def load_adult_table(
    split: str = "train",
    columns: Sequence[str] = DEFAULT_COLUMNS,
    n: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
) -> Table:
    """Adult ``split`` encoded in :func:`adult_domain`; ``n`` rows drawn at random (seeded) if given."""
    check_choice(split, "split", "load_adult_table", ("train", "test"))
    domain = adult_domain(columns, data_dir)
    raw = load_adult_raw(split, data_dir)
    keep = [i for i in range(len(raw["age"])) if all(raw[c][i] != "?" for c in columns)]
    if n is not None:
        check_int(n, "n", "load_adult_table", low=2, high=len(keep))
        keep = sorted(np.random.default_rng(seed).choice(keep, n, replace=False).tolist())
    data = {c: [raw[c][i] for i in keep] for c in columns}
    return Table.from_columns(data, domain)
