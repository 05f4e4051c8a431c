"""The one result object every audit returns: a frozen, JSON-ready record of what was proven."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from privlab._json import jsonable
from privlab.errors import CorruptArtifactError

SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """An empirical epsilon lower bound (or, when ``confidence`` is None, a point estimate).

    Attributes:
        method: the audit that produced it (``"multi_run"``, ``"multi_run_gdp"``, ``"one_run"``,
            ``"gdp_roc"``, ``"gdp_roc_estimate"``).
        epsilon_lower_bound: with probability at least ``confidence`` over the audit's randomness,
            the mechanism is not (eps, delta)-DP for any eps below this value.
        confidence: ``1 - alpha``; ``None`` for a point estimate, which proves nothing.
        delta: the delta of the (eps, delta) claim being tested.
        details: the test that was used (threshold, counts, guesses, ...), JSON-ready.
        claimed_epsilon: the epsilon the mechanism claims, if known.
    """

    method: str
    epsilon_lower_bound: float
    confidence: float | None
    delta: float
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    claimed_epsilon: float | None = None

    @property
    def is_bound(self) -> bool:
        """True if the value is a lower bound at a stated confidence, False for a point estimate."""
        return self.confidence is not None

    @property
    def violates_claim(self) -> bool:
        """True if a proven lower bound exceeds the claimed epsilon (never for point estimates)."""
        return self.is_bound and self.claimed_epsilon is not None and self.epsilon_lower_bound > self.claimed_epsilon

    def with_claim(self, claimed_epsilon: float) -> AuditResult:
        """The same result, compared against ``claimed_epsilon``."""
        return dataclasses.replace(self, claimed_epsilon=float(claimed_epsilon))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with ``schema_version``) that :meth:`from_dict` reads back."""
        return {
            "schema_version": SCHEMA_VERSION,
            "method": self.method,
            "epsilon_lower_bound": jsonable(self.epsilon_lower_bound),
            "confidence": self.confidence,
            "delta": self.delta,
            "claimed_epsilon": self.claimed_epsilon,
            "violates_claim": self.violates_claim,
            "details": jsonable(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditResult:
        """Read back the output of :meth:`to_dict`; refuse an unknown schema version."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise CorruptArtifactError(f"AuditResult schema_version must be {SCHEMA_VERSION}. Got {version!r} instead.")
        try:
            return cls(
                method=str(data["method"]),
                epsilon_lower_bound=float(data["epsilon_lower_bound"]),
                confidence=None if data["confidence"] is None else float(data["confidence"]),
                delta=float(data["delta"]),
                details=dict(data.get("details", {})),
                claimed_epsilon=None if data.get("claimed_epsilon") is None else float(data["claimed_epsilon"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptArtifactError(f"AuditResult dict is missing or has a malformed field: {exc}") from exc
