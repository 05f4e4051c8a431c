"""Marginal TVD against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from privlab.synth import Column, Domain, Table
from privlab.synth.evaluation import dcr, marginal_tvd, mean_tvd

D = Domain(tuple(Column(n, "categorical", ("0", "1")) for n in "abc"))


def t(rows: list[list[int]]) -> Table:
    return Table(D, np.array(rows))


REAL = t([[0, 0, 0], [0, 1, 1], [1, 1, 0], [1, 1, 1]])
SYN = t([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 1]])


def test_one_two_three_way_by_hand() -> None:
    # column a: real (1/2, 1/2), syn (3/4, 1/4) -> 1/4; b: (1/4, 3/4) vs (1/2, 1/2) -> 1/4; c: equal -> 0
    assert marginal_tvd(REAL, SYN, [0]) == pytest.approx(0.25)
    assert mean_tvd(REAL, SYN, 1) == pytest.approx((0.25 + 0.25 + 0.0) / 3)
    # (a, b): real cells 00:1 01:1 11:2 ; syn 00:2 01:1 11:1 -> 1/2 (|1-2| + 0 + |2-1|) / 4 = 1/4
    assert marginal_tvd(REAL, SYN, [0, 1]) == pytest.approx(0.25)
    # 3-way: real {000, 011, 110, 111}, syn {000, 001, 010, 111}: 2 shared cells -> TVD 1/2
    assert mean_tvd(REAL, SYN, 3) == pytest.approx(0.5)
    assert mean_tvd(REAL, REAL, 2) == 0.0


def test_dcr_counts_copies() -> None:
    out = dcr(SYN, REAL, t([[1, 0, 0], [1, 0, 1], [1, 0, 0], [1, 0, 1]]))
    assert out["exact_copies"] == pytest.approx(0.5)  # 000 and 111 are training rows
    assert out["median_dcr_train"] == pytest.approx(0.5)
