"""Zero-concentrated DP (zCDP) events: what marginal-based synthesizers (AIM, MST) spend.

A mechanism is rho-zCDP (Bun & Steinke 2016) if its Renyi divergence of every order alpha > 1 between
neighbouring inputs is at most ``alpha * rho``. The Gaussian mechanism with L2 sensitivity 1 and
standard deviation sigma is ``1 / (2 sigma^2)``-zCDP; the exponential mechanism with parameter eps is
``eps^2 / 8``-zCDP (Cesar & Rogers 2021); rho's add up under composition. Conversion to
(epsilon, delta) goes through ``dp-accounting``'s RDP accountant (its ``ZCDpEvent``), i.e. the
conversion of Canonne, Kamath & Steinke 2020 evaluated on the accountant's grid of orders; it is at
most the closed form ``rho + 2 sqrt(rho log(1/delta))`` (Bun & Steinke 2016, Prop. 1.3).

A :class:`ZCDPLedger` has the ``record`` / ``epsilon`` / JSON surface of
:class:`~privlab.accounting.PrivacyLedger`, with one entry per named zCDP component.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dp_accounting

from privlab._json import check_sealed, jsonable, seal
from privlab._validation import check_real
from privlab.accounting.core import epsilon_from_event
from privlab.errors import CorruptArtifactError

ZCDP_SCHEMA = "privlab.zcdp_ledger"


def zcdp_epsilon(rho: float, delta: float) -> float:
    """Epsilon at ``delta`` of a rho-zCDP mechanism (RDP accountant; ``inf`` for rho = inf)."""
    r = check_real(rho, "rho", "zcdp_epsilon", low=0.0, allow_inf=True)
    check_real(delta, "delta", "zcdp_epsilon", low=0.0, high=1.0, low_open=True, high_open=True)
    if r == 0.0:
        return 0.0
    if math.isinf(r):
        return math.inf
    return epsilon_from_event(dp_accounting.ZCDpEvent(r), delta, "rdp")


def zcdp_closed_form(rho: float, delta: float) -> float:
    """The closed-form bound ``rho + 2 sqrt(rho log(1/delta))`` (Bun & Steinke 2016, Prop. 1.3)."""
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


@dataclass(frozen=True)
class ZCDPEntry:
    """One rho-zCDP component, e.g. ``("aim", 0.0306)``; ``detail`` says what it measured."""

    mechanism: str
    rho: float
    detail: str = ""

    def __post_init__(self) -> None:
        check_real(self.rho, "rho", "ZCDPEntry", low=0.0, allow_inf=True)


@dataclass
class ZCDPLedger:
    """zCDP components of one release, composed by adding rho, reported at ``delta``."""

    delta: float
    entries: list[ZCDPEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_real(self.delta, "delta", "ZCDPLedger", low=0.0, high=1.0, low_open=True, high_open=True)

    def record(self, mechanism: str, rho: float, detail: str = "") -> None:
        """Append a rho-zCDP component."""
        self.entries.append(ZCDPEntry(str(mechanism), float(rho), detail))

    @property
    def rho(self) -> float:
        return float(sum(e.rho for e in self.entries))

    def event(self) -> dp_accounting.DpEvent:
        """The composed ``DpEvent`` (one ``ZCDpEvent`` per entry)."""
        return dp_accounting.ComposedDpEvent([dp_accounting.ZCDpEvent(e.rho) for e in self.entries])

    def epsilon(self, delta: float | None = None) -> float:
        """Epsilon of every recorded component at ``delta`` (default: the ledger's)."""
        return zcdp_epsilon(self.rho, self.delta if delta is None else delta)

    def _body(self) -> dict[str, Any]:
        return {
            "schema": ZCDP_SCHEMA,
            "schema_version": 1,
            "mechanism": "zcdp",
            "neighbouring_relation": "add_or_remove_one",
            "accountant": "rdp",
            "delta": self.delta,
            "rho": jsonable(self.rho),
            "entries": [jsonable(asdict(e)) for e in self.entries],
            "epsilon": jsonable(self.epsilon()),
        }

    def to_dict(self) -> dict[str, Any]:
        return seal(self._body())

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZCDPLedger:
        """Rebuild and verify (schema, checksum, recomputed epsilon)."""
        check_sealed(data, schema=ZCDP_SCHEMA, versions=[1], what="zCDP ledger")
        try:
            led = cls(
                float(data["delta"]),
                [ZCDPEntry(str(e["mechanism"]), float(e["rho"]), str(e.get("detail", ""))) for e in data["entries"]],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptArtifactError(f"Malformed zCDP ledger: {exc}") from exc
        if jsonable(led.epsilon()) != data.get("epsilon") and not (
            isinstance(data.get("epsilon"), float) and math.isclose(data["epsilon"], led.epsilon(), rel_tol=1e-6)
        ):
            raise CorruptArtifactError("zCDP ledger epsilon does not match its recomputation.")
        return led

    @classmethod
    def from_json(cls, source: str | Path) -> ZCDPLedger:
        text = str(source) if isinstance(source, str) and source.lstrip().startswith("{") else Path(source).read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorruptArtifactError(f"zCDP ledger is not valid JSON: {exc}") from exc
        return cls.from_dict(data)
