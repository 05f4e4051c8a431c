"""Adult's declared domain comes from the public documentation, not from the private training rows."""

from __future__ import annotations

import pytest

import privlab.synth.adult as adult
from privlab.errors import InvalidParameterError


def test_domain_reads_no_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("adult_domain read the private training file")

    monkeypatch.setattr(adult, "load_adult_raw", no_data)
    dom = adult.adult_domain()
    assert [c.name for c in dom.columns] == list(adult.DEFAULT_COLUMNS)
    with pytest.raises(InvalidParameterError, match="unknown column 'salary'"):
        adult.adult_domain(("age", "salary"))


def test_categories_equal_the_training_files_lists() -> None:
    from privlab.data.adult import load_adult_raw
    from privlab.errors import DataUnavailableError

    try:
        raw = load_adult_raw("train")
    except DataUnavailableError as exc:
        pytest.skip(str(exc))
    for name, cats in adult.CATEGORIES.items():
        assert cats == tuple(sorted(set(raw[name]) - {"?"})), name  # same codes as before
    test_raw = load_adult_raw("test")
    for name, cats in adult.CATEGORIES.items():
        assert set(test_raw[name]) - {"?"} <= set(cats), name
