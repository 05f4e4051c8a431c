"""A privacy ledger: what a training run released, serialisable to JSON and recomputable.

Each :class:`LedgerEntry` says "``steps`` steps of the Poisson-subsampled Gaussian mechanism with
noise multiplier sigma and sampling rate q". Consecutive steps with the same parameters are merged,
so a run that changes nothing mid-way has one entry. The composed event is
``ComposedDpEvent([SelfComposed(PoissonSampled(q, Gaussian(sigma)), steps), ...])``.

The JSON form carries a schema version and a SHA-256 of its canonical body; :meth:`from_json`
refuses a file whose checksum, schema or stored epsilon disagrees with what it recomputes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dp_accounting

from privlab._json import check_sealed, jsonable, seal
from privlab._validation import check_choice, check_int, check_real
from privlab.accounting.core import ACCOUNTANTS, dpsgd_event, epsilon_from_event
from privlab.errors import CorruptArtifactError, InvalidParameterError

LEDGER_SCHEMA = "privlab.ledger"
LEDGER_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class LedgerEntry:
    """``steps`` steps of DP-SGD at noise multiplier ``noise_multiplier`` and rate ``sample_rate``."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        check_real(self.noise_multiplier, "noise_multiplier", "LedgerEntry", low=0.0, allow_inf=True)
        check_real(self.sample_rate, "sample_rate", "LedgerEntry", low=0.0, high=1.0)
        check_int(self.steps, "steps", "LedgerEntry", low=0)


@dataclass
class PrivacyLedger:
    """The privacy events of one training run, with the accountant and delta used to report them.

    ``privacy_unit`` names what the neighbouring datasets differ by ("example" by default; "secret",
    "document", "user" ... for unit-level DP-SGD, where q is the rate at which whole units are sampled).
    """

    delta: float
    accountant: str = "pld"
    entries: list[LedgerEntry] = field(default_factory=list)
    privacy_unit: str = "example"
    _memo: dict[tuple[Any, ...], float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_real(self.delta, "delta", "PrivacyLedger", low=0.0, high=1.0, low_open=True, high_open=True)
        check_choice(self.accountant, "accountant", "PrivacyLedger", ACCOUNTANTS)
        if not isinstance(self.privacy_unit, str) or not self.privacy_unit:
            raise InvalidParameterError(
                "The 'privacy_unit' parameter of PrivacyLedger must be a non-empty string (e.g. 'example'). "
                f"Got {self.privacy_unit!r} instead."
            )

    # -- recording -------------------------------------------------------------------------
    def record(self, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Append ``steps`` steps; merged into the last entry when its parameters are identical."""
        new = LedgerEntry(float(noise_multiplier), float(sample_rate), int(steps))
        if new.steps == 0:
            return
        if self.entries and (
            self.entries[-1].noise_multiplier == new.noise_multiplier
            and self.entries[-1].sample_rate == new.sample_rate
        ):
            last = self.entries[-1]
            self.entries[-1] = LedgerEntry(last.noise_multiplier, last.sample_rate, last.steps + new.steps)
        else:
            self.entries.append(new)

    @property
    def steps(self) -> int:
        """Total number of recorded steps."""
        return sum(e.steps for e in self.entries)

    # -- accounting ------------------------------------------------------------------------
    def event(self) -> dp_accounting.DpEvent:
        """The composed ``DpEvent`` of every entry."""
        return dp_accounting.ComposedDpEvent(
            [dpsgd_event(e.noise_multiplier, e.sample_rate, e.steps) for e in self.entries]
        )

    def epsilon(self, delta: float | None = None, accountant: str | None = None) -> float:
        """Epsilon of everything recorded so far (``inf`` if any step had zero noise).

        Memoised on the entries, delta and accountant: a PLD composition costs up to seconds, and
        reports, checkpoints and logs ask for the same value several times.
        """
        d = self.delta if delta is None else delta
        acc = self.accountant if accountant is None else accountant
        key = (tuple(self.entries), d, acc)
        if key not in self._memo:
            if len(self._memo) >= 8:  # a growing ledger would otherwise keep every past value
                self._memo.clear()
            self._memo[key] = self._compute_epsilon(d, acc)
        return self._memo[key]

    def _compute_epsilon(self, d: float, acc: str) -> float:
        live = [e for e in self.entries if e.steps > 0 and e.sample_rate > 0 and not math.isinf(e.noise_multiplier)]
        if not live:
            return 0.0
        if any(e.noise_multiplier == 0.0 for e in live):
            return math.inf
        event = dp_accounting.ComposedDpEvent([dpsgd_event(e.noise_multiplier, e.sample_rate, e.steps) for e in live])
        return epsilon_from_event(event, d, acc)

    # -- serialisation ---------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        return {
            "schema": LEDGER_SCHEMA,
            "schema_version": LEDGER_SCHEMA_VERSION,
            "mechanism": "poisson_subsampled_gaussian",
            "neighbouring_relation": "add_or_remove_one",
            "privacy_unit": self.privacy_unit,
            "accountant": self.accountant,
            "delta": self.delta,
            "entries": [asdict(e) for e in self.entries],
            "epsilon": jsonable(self.epsilon()),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a SHA-256 of its canonical body."""
        return seal(self._body())

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to a JSON string, and write it to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyLedger:
        """Rebuild a ledger, refusing one whose schema, checksum or epsilon does not check out."""
        check_sealed(data, schema=LEDGER_SCHEMA, versions=[LEDGER_SCHEMA_VERSION], what="Ledger")
        try:
            ledger = cls(
                delta=float(data["delta"]),
                accountant=str(data["accountant"]),
                entries=[LedgerEntry(**e) for e in data["entries"]],
                privacy_unit=str(data.get("privacy_unit", "example")),  # ledgers written before units
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptArtifactError(f"Malformed ledger: {exc}") from exc
        stored = data.get("epsilon")
        recomputed = jsonable(ledger.epsilon())
        if isinstance(stored, float | int) and isinstance(recomputed, float):
            if not math.isclose(stored, recomputed, rel_tol=1e-6, abs_tol=1e-9):
                raise CorruptArtifactError(f"Ledger epsilon {stored} does not match the recomputed {recomputed}.")
        elif stored != recomputed:
            raise CorruptArtifactError(f"Ledger epsilon {stored!r} does not match {recomputed!r}.")
        return ledger

    @classmethod
    def from_json(cls, source: str | Path) -> PrivacyLedger:
        """Load from a JSON string or a path to a JSON file."""
        is_text = isinstance(source, str) and source.lstrip().startswith("{")
        text = str(source) if is_text else Path(source).read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorruptArtifactError(f"Ledger is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
