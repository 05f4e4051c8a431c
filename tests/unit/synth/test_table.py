"""Domain/table validation: every bad input names the column or parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privlab.errors import InvalidParameterError
from privlab.synth import Column, Domain, Table, get_generator

DOMAIN = Domain((Column("colour", "categorical", ("red", "blue")), Column("age", "numeric", low=0, high=100, bins=4)))


def test_encode_decode_round_trip_and_clipping() -> None:
    t = Table.from_columns({"colour": ["red", "blue", "red"], "age": [10.0, 99.0, 130.0]}, DOMAIN)
    assert t.codes.tolist() == [[0, 0], [1, 3], [0, 3]]  # 130 clipped to the declared bound 100
    assert t.to_columns() == {"colour": ["red", "blue", "red"], "age": [12.5, 87.5, 87.5]}
    assert t.onehot().shape == (3, 6)


def test_unknown_column_type_names_column() -> None:
    with pytest.raises(InvalidParameterError, match=r"'when'.*'categorical', 'numeric'.*'date'"):
        Domain.from_dicts(
            [{"name": "when", "type": "date"}, {"name": "x", "type": "categorical", "categories": [1, 2]}]
        )


def test_single_value_categorical_names_column() -> None:
    with pytest.raises(InvalidParameterError, match=r"'flag'.*at least two"):
        Column("flag", "categorical", ("yes",))


@pytest.mark.parametrize("missing", [None, float("nan"), "", "?"])
def test_missing_values_name_the_column(missing: object) -> None:
    with pytest.raises(InvalidParameterError, match="Column 'colour' has a missing value at row 1"):
        Table.from_columns({"colour": ["red", missing], "age": [1.0, 2.0]}, DOMAIN)


def test_unknown_category_and_bad_bounds() -> None:
    with pytest.raises(InvalidParameterError, match="'colour' has value 'green'"):
        Table.from_columns({"colour": ["green"], "age": [1.0]}, DOMAIN)
    with pytest.raises(InvalidParameterError, match=r"'age'.*low < high"):
        Column("age", "numeric", low=5, high=5)
    with pytest.raises(InvalidParameterError, match="'age' must declare 'high'"):
        Column.from_dict({"name": "age", "type": "numeric", "low": 0})
    with pytest.raises(InvalidParameterError, match="'age' has codes outside"):
        Table(DOMAIN, np.array([[0, 7]]))


@pytest.mark.parametrize("eps", [0.0, -1.0, math.nan])
def test_epsilon_must_be_positive(eps: float) -> None:
    t = Table.from_columns({"colour": ["red", "blue"] * 5, "age": list(range(10))}, DOMAIN)
    with pytest.raises(InvalidParameterError, match=r"'epsilon' parameter of .*fit must be"):
        get_generator("bayesnet").fit(t, eps, 1e-5)
    with pytest.raises(InvalidParameterError, match="'delta' parameter"):
        get_generator("copula").fit(t, 1.0, 0.0)


def test_unknown_generator_and_options() -> None:
    with pytest.raises(InvalidParameterError, match="'generator' parameter must be one of"):
        get_generator("gan")
    with pytest.raises(InvalidParameterError, match="Bad options for generator 'aim'"):
        get_generator("aim", temperature=2)
