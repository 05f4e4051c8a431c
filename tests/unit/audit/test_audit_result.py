"""AuditResult: frozen, JSON round trip, violation semantics."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from privlab.audit import AuditResult
from privlab.errors import CorruptArtifactError


def _result(**kw: object) -> AuditResult:
    base: dict[str, object] = dict(method="multi_run", epsilon_lower_bound=1.5, confidence=0.95, delta=1e-5,
                                   details={"threshold": np.float64(0.5), "n": np.int64(3), "arr": np.arange(2),
                                            "inf": float("inf")})
    base.update(kw)
    return AuditResult(**base)  # type: ignore[arg-type]


def test_frozen_and_json_round_trip() -> None:
    r = _result(claimed_epsilon=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.epsilon_lower_bound = 3.0  # type: ignore[misc]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["violates_claim"] is True and d["details"]["arr"] == [0, 1] and d["details"]["inf"] == "inf"
    back = AuditResult.from_dict(d)
    assert back.epsilon_lower_bound == r.epsilon_lower_bound and back.claimed_epsilon == 1.0


def test_violates_claim_semantics() -> None:
    assert not _result().violates_claim  # no claim
    assert not _result(claimed_epsilon=1.5).violates_claim  # equal is not a violation
    assert _result(claimed_epsilon=1.49).violates_claim
    assert not _result(confidence=None, claimed_epsilon=0.1).violates_claim  # an estimate proves nothing
    assert _result().with_claim(1.0).violates_claim


def test_from_dict_refuses_unknown_schema() -> None:
    d = _result().to_dict()
    d["schema_version"] = 99
    with pytest.raises(CorruptArtifactError, match="schema_version"):
        AuditResult.from_dict(d)
    d = _result().to_dict()
    del d["method"]
    with pytest.raises(CorruptArtifactError):
        AuditResult.from_dict(d)
