"""Accounting for DP-SGD with fixed-size batches sampled without replacement (replace-one adjacency).

Each step draws a uniformly random subset of exactly ``b`` of the ``N`` examples (independently across
steps), sums their clipped gradients (norm <= C each) and adds ``N(0, sigma^2 C^2 I)``. With a fixed
batch size the natural neighbouring relation is *replace one example* (adding or removing one would
change the batch size, which is public); replacing one example moves the clipped sum by up to 2C, so
the Gaussian mechanism's noise-to-sensitivity ratio is ``sigma / 2``. The subsampled mechanism is
bounded with the RDP of sampling without replacement (Wang, Balle & Kasiviswanathan 2019, "Subsampled
Renyi Differential Privacy and Analytical Moments Accountant"), as implemented by Google's
``dp_accounting`` (``SampledWithoutReplacementDpEvent``, ``NeighboringRelation.REPLACE_ONE``).

The resulting epsilon is under replace-one adjacency, which is not comparable one-to-one with the
add/remove-one epsilon of Poisson sampling (replace-one is roughly "two add/remove steps").
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dp_accounting
from dp_accounting.rdp import RdpAccountant
from scipy.optimize import brentq

from privlab._validation import check_int, check_real
from privlab.accounting.core import compose_quietly
from privlab.errors import CorruptArtifactError, InvalidParameterError

FIXED_SIZE_SCHEMA = "privlab.fixed_size_ledger"


def fixed_size_event(noise_multiplier: float, dataset_size: int, batch_size: int, steps: int) -> dp_accounting.DpEvent:
    """``steps`` compositions of Gaussian(sigma / 2) on a without-replacement sample of ``batch_size``."""
    inner = dp_accounting.GaussianDpEvent(noise_multiplier / 2.0)  # replace-one sensitivity is 2C
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.SampledWithoutReplacementDpEvent(dataset_size, batch_size, inner), steps
    )


def fixed_size_epsilon(noise_multiplier: float, dataset_size: int, batch_size: int, steps: int, delta: float) -> float:
    """Epsilon (replace-one adjacency, RDP accountant) of fixed-size-batch DP-SGD."""
    owner = "fixed_size_epsilon"
    sigma = check_real(noise_multiplier, "noise_multiplier", owner, low=0.0)
    n = check_int(dataset_size, "dataset_size", owner, low=1)
    b = check_int(batch_size, "batch_size", owner, low=1, high=n)
    t = check_int(steps, "steps", owner, low=0)
    d = check_real(delta, "delta", owner, low=0.0, high=1.0, low_open=True, high_open=True)
    if t == 0:
        return 0.0
    if sigma == 0.0:
        return math.inf
    acc = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    compose_quietly(acc, fixed_size_event(sigma, n, b, t))
    return float(acc.get_epsilon(d))


def calibrate_fixed_size_noise(
    target_epsilon: float, dataset_size: int, batch_size: int, steps: int, delta: float, tol: float = 1e-4
) -> float:
    """Smallest noise multiplier (up to ``tol``) whose :func:`fixed_size_epsilon` is <= ``target_epsilon``."""
    eps = check_real(target_epsilon, "target_epsilon", "calibrate_fixed_size_noise", low=0.0, low_open=True)

    def gap(sigma: float) -> float:
        return fixed_size_epsilon(sigma, dataset_size, batch_size, steps, delta) - eps

    lo, hi = 0.2, 1.0
    while gap(hi) > 0:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise InvalidParameterError(
                f"The 'target_epsilon' parameter of calibrate_fixed_size_noise is unreachable with noise "
                f"multiplier below 1e4. Got {eps!r} instead."
            )
    while gap(lo) <= 0:  # even lo meets the budget: search lower, so the result is the smallest sigma
        if lo < 1e-3:
            return lo
        lo, hi = lo / 2, lo
    sigma = float(brentq(gap, lo, hi, xtol=tol))
    while gap(sigma) > 0:  # never overshoot the budget
        sigma += tol
    return sigma


@dataclass
class FixedSizeLedger:
    """Steps of fixed-size-batch DP-SGD: the same ``record`` / ``epsilon`` / JSON surface as PrivacyLedger."""

    delta: float
    dataset_size: int
    batch_size: int
    noise_multiplier: float | None = None
    steps: int = 0

    def record(self, noise_multiplier: float, sample_rate: float = 0.0, steps: int = 1) -> None:
        """Add ``steps`` steps (``sample_rate`` is ignored: the batch size is fixed)."""
        if self.noise_multiplier is not None and noise_multiplier != self.noise_multiplier:
            raise InvalidParameterError(
                f"The 'noise_multiplier' parameter of FixedSizeLedger.record must stay {self.noise_multiplier}. "
                f"Got {noise_multiplier!r} instead."
            )
        self.noise_multiplier = float(noise_multiplier)
        self.steps += check_int(steps, "steps", "FixedSizeLedger.record", low=0)

    def epsilon(self, delta: float | None = None) -> float:
        if self.noise_multiplier is None or self.steps == 0:
            return 0.0
        d = self.delta if delta is None else delta
        return fixed_size_epsilon(self.noise_multiplier, self.dataset_size, self.batch_size, self.steps, d)

    def _body(self) -> dict[str, Any]:
        eps = self.epsilon()
        return {
            "schema": FIXED_SIZE_SCHEMA,
            "schema_version": 1,
            "mechanism": "fixed_size_subsampled_gaussian",
            "neighbouring_relation": "replace_one",
            "accountant": "rdp",
            "delta": self.delta,
            "dataset_size": self.dataset_size,
            "batch_size": self.batch_size,
            "noise_multiplier": self.noise_multiplier,
            "steps": self.steps,
            "epsilon": eps if math.isfinite(eps) else "inf",
        }

    def to_json(self, path: str | Path | None = None) -> str:
        body = self._body()
        body["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        text = json.dumps(body, indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> FixedSizeLedger:
        """Load and verify (schema, checksum, recomputed epsilon); raise CorruptArtifactError otherwise."""
        text = str(source) if isinstance(source, str) and source.lstrip().startswith("{") else Path(source).read_text()
        try:
            data = json.loads(text)
            body = {k: v for k, v in data.items() if k != "sha256"}
            if data.get("schema") != FIXED_SIZE_SCHEMA:
                raise CorruptArtifactError(f"Not a fixed-size ledger: expected schema {FIXED_SIZE_SCHEMA!r}.")
            if data.get("sha256") != hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest():
                raise CorruptArtifactError("Fixed-size ledger checksum mismatch: the file was modified.")
            led = cls(
                float(data["delta"]),
                int(data["dataset_size"]),
                int(data["batch_size"]),
                data["noise_multiplier"],
                int(data["steps"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptArtifactError(f"Malformed fixed-size ledger: {exc}") from exc
        stored, recomputed = data.get("epsilon"), led._body()["epsilon"]
        same = stored == recomputed or (
            isinstance(stored, float | int) and isinstance(recomputed, float) and math.isclose(stored, recomputed)
        )
        if not same:
            raise CorruptArtifactError("Fixed-size ledger epsilon does not match its recomputation.")
        return led
