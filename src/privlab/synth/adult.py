"""Adult (census income) as a synthesis table: a declared domain and rows without missing values.

Numeric columns use public bounds (age 17-90, hours-per-week 1-99, from the UCI documentation) cut
into equal-width bins; categorical columns use the category lists of UCI's ``adult.names`` (public
documentation, hard-coded below in sorted order), never the private training rows. Rows with
a missing value (``?``) in a selected column are dropped (about 7% of rows, in workclass and
occupation); ``income`` is ">50K" / "<=50K".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from privlab._validation import check_choice, check_int
from privlab.data.adult import COLUMNS, load_adult_raw
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
# UCI adult.names, each list sorted (the order codes are assigned in)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "workclass": (
        "Federal-gov", "Local-gov", "Never-worked", "Private", "Self-emp-inc", "Self-emp-not-inc", "State-gov",
        "Without-pay",
    ),
    "education": (
        "10th", "11th", "12th", "1st-4th", "5th-6th", "7th-8th", "9th", "Assoc-acdm", "Assoc-voc", "Bachelors",
        "Doctorate", "HS-grad", "Masters", "Preschool", "Prof-school", "Some-college",
    ),
    "marital-status": (
        "Divorced", "Married-AF-spouse", "Married-civ-spouse", "Married-spouse-absent", "Never-married",
        "Separated", "Widowed",
    ),
    "occupation": (
        "Adm-clerical", "Armed-Forces", "Craft-repair", "Exec-managerial", "Farming-fishing", "Handlers-cleaners",
        "Machine-op-inspct", "Other-service", "Priv-house-serv", "Prof-specialty", "Protective-serv", "Sales",
        "Tech-support", "Transport-moving",
    ),
    "relationship": ("Husband", "Not-in-family", "Other-relative", "Own-child", "Unmarried", "Wife"),
    "race": ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"),
    "sex": ("Female", "Male"),
    "native-country": (
        "Cambodia", "Canada", "China", "Columbia", "Cuba", "Dominican-Republic", "Ecuador", "El-Salvador",
        "England", "France", "Germany", "Greece", "Guatemala", "Haiti", "Holand-Netherlands", "Honduras", "Hong",
        "Hungary", "India", "Iran", "Ireland", "Italy", "Jamaica", "Japan", "Laos", "Mexico", "Nicaragua",
        "Outlying-US(Guam-USVI-etc)", "Peru", "Philippines", "Poland", "Portugal", "Puerto-Rico", "Scotland",
        "South", "Taiwan", "Thailand", "Trinadad&Tobago", "United-States", "Vietnam", "Yugoslavia",
    ),
    "income": ("<=50K", ">50K"),
}


def adult_domain(columns: Sequence[str] = DEFAULT_COLUMNS, data_dir: str | Path | None = None) -> Domain:
    """The declared domain of the selected Adult columns (public bounds and :data:`CATEGORIES`; no data
    is read, ``data_dir`` is accepted for symmetry with :func:`load_adult_table`)."""
    cols = []
    for name in columns:
        if name not in COLUMNS:
            raise InvalidParameterError(f"The 'columns' parameter of adult_domain has unknown column {name!r}.")
        if name in NUMERIC_BOUNDS:
            lo, hi, bins = NUMERIC_BOUNDS[name]
            cols.append(Column(name, "numeric", low=lo, high=hi, bins=bins))
        elif name in ("fnlwgt", "capital-gain", "capital-loss"):
            raise InvalidParameterError(f"Column {name!r} has no declared bounds in privlab.synth.adult; drop it.")
        else:
            cols.append(Column(name, "categorical", CATEGORIES[name]))
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
