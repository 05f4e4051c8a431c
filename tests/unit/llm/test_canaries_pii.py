"""Canary planting (counts, reproducibility) and faker PII sentences with their regexes."""

from __future__ import annotations

import pytest

from privlab.errors import InvalidParameterError
from privlab.llm.canaries import digit_canaries, insert_canaries
from privlab.llm.pii import PATTERNS, distractors, find_pii, pii_canaries

TEXT = "\n".join(f"line {i} of the corpus" for i in range(500))


def test_digit_canaries_levels_and_seed():
    cs = digit_canaries((1, 4, 16), per_level=3, n_digits=5, seed=7)
    assert [c.repetitions for c in cs] == [1, 1, 1, 4, 4, 4, 16, 16, 16]
    assert len({c.secret for c in cs}) == 9 and all(len(c.secret) == 5 and c.secret.isdigit() for c in cs)
    assert cs == digit_canaries((1, 4, 16), per_level=3, n_digits=5, seed=7)
    assert cs != digit_canaries((1, 4, 16), per_level=3, n_digits=5, seed=8)
    with pytest.raises(InvalidParameterError, match="'repetitions' parameter"):
        digit_canaries((0, 4))


def test_insert_counts_and_reproducible():
    cs = digit_canaries((1, 4, 16, 64), per_level=2, seed=0)
    a = insert_canaries(TEXT, cs, seed=3)
    for c in cs:
        assert a.text.count(c.text) == c.repetitions
    assert a.text.count("\n") == TEXT.count("\n") + sum(c.repetitions for c in cs)
    assert a.text == insert_canaries(TEXT, cs, seed=3).text
    assert a.text != insert_canaries(TEXT, cs, seed=4).text
    stripped = "\n".join(line for line in a.text.split("\n") if not line.startswith("my secret"))
    assert stripped == TEXT  # the corpus itself is untouched
    assert a.by_repetitions()[64] == [c for c in cs if c.repetitions == 64]


def test_pii_canaries_are_tagged_by_their_regex():
    cs = pii_canaries((1, 4), seed=0)
    assert {c.kind for c in cs} == {"name", "email", "phone", "ssn"} and len(cs) == 8
    for c in cs:
        assert PATTERNS[c.kind].fullmatch(c.secret), (c.kind, c.secret)
        assert c.secret in find_pii(c.text)[c.kind]
    assert cs == pii_canaries((1, 4), seed=0)
    assert cs != pii_canaries((1, 4), seed=1)
    ssn = next(c.secret for c in cs if c.kind == "ssn")
    assert ssn not in find_pii(f"call 555-{ssn}")["phone"]  # an SSN inside a longer number is not a phone
    d = distractors("email", 5, seed=0, exclude=[c.secret for c in cs])
    assert len(set(d)) == 5 and all(PATTERNS["email"].fullmatch(x) for x in d)
