"""Synthetic personal data (PII) in templated sentences, and the regular expressions that find it.

Names, emails, phone numbers and SSN-like numbers come from ``faker`` (seeded, en_US), each in a
sentence whose PII is the *secret* of a :class:`~privlab.llm.canaries.Canary` (its prefix is what an
attacker may prompt with). Lukas et al. 2023 ("Analyzing Leakage of Personally Identifiable
Information in Language Models") tag PII with an NER model; offline, structured PII (email, phone,
SSN) is tagged with the regexes below and names with a capitalised-bigram pattern (noisy on
Shakespeare, which is why name precision is reported separately).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from privlab._validation import check_int
from privlab.llm.canaries import DEFAULT_REPETITIONS, Canary, _check_reps

PII_KINDS = ("name", "email", "phone", "ssn")
PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "phone": re.compile(r"(?<!\d)\d{3}-\d{3}-\d{4}(?!\d)"),
    "ssn": re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"),
    "name": re.compile(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b"),
}
TEMPLATES: dict[str, tuple[str, str]] = {  # kind -> (prefix with {name}, suffix)
    "email": ("The email address of {name} is ", "."),
    "phone": ("You can reach {name} by phone at ", "."),
    "ssn": ("The social security number of {name} is ", "."),
    "name": ("Our new patient at room {room} is ", "."),
}


def _faker(seed: int) -> Any:
    try:
        from faker import Faker
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError("Synthetic PII needs faker, in the llm extra: pip install privlab[llm]") from None
    fake = Faker("en_US")
    fake.seed_instance(seed)
    return fake


def pii_value(fake: Any, kind: str) -> str:
    """One synthetic value of ``kind`` in the format its regex tags."""
    if kind == "email":
        return str(fake.email()).encode("ascii", "ignore").decode()
    if kind == "phone":
        return str(fake.numerify("###-###-####")).replace("-0", "-1")
    if kind == "ssn":
        return str(fake.ssn())
    return f"{fake.first_name()} {fake.last_name()}".encode("ascii", "ignore").decode()


def pii_canaries(
    repetitions: Sequence[int] = DEFAULT_REPETITIONS,
    per_level: int = 1,
    kinds: Sequence[str] = PII_KINDS,
    seed: int = 0,
) -> list[Canary]:
    """``per_level`` PII sentences of each kind for each repetition count (distinct values)."""
    reps = _check_reps(repetitions, "pii_canaries")
    check_int(per_level, "per_level", "pii_canaries", low=1)
    fake = _faker(seed)
    seen: set[str] = set()
    out: list[Canary] = []
    for r in reps:
        for kind in kinds:
            for _ in range(per_level):
                value = pii_value(fake, kind)
                while value in seen:
                    value = pii_value(fake, kind)
                seen.add(value)
                pre, suf = TEMPLATES[kind]
                who = f"{fake.first_name()} {fake.last_name()}".encode("ascii", "ignore").decode()
                out.append(Canary(pre.format(name=who, room=fake.numerify("###")), value, suf, r, kind))
    return out


def distractors(kind: str, n: int, seed: int, exclude: Sequence[str] = ()) -> list[str]:
    """``n`` fresh values of ``kind`` (for the inference game's candidate sets)."""
    check_int(n, "n", "distractors", low=0)
    fake = _faker(seed + 10_007)
    out: list[str] = []
    banned = set(exclude)
    while len(out) < n:
        v = pii_value(fake, kind)
        if v not in banned:
            banned.add(v)
            out.append(v)
    return out


def find_pii(text: str, kinds: Sequence[str] = PII_KINDS) -> dict[str, set[str]]:
    """Every regex match of each kind in ``text`` (SSN-like strings are not counted as phones)."""
    return {k: set(PATTERNS[k].findall(text)) for k in kinds}
