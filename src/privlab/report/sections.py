"""Pillar sections of the privacy report: one data-only shape that every pillar fills in.

A pillar (unlearning, language models, federated learning, synthetic data, ...) does not render
HTML. It returns a :class:`Section`: tables (column names + rows of plain values), figures (inline
SVG strings, e.g. from :mod:`privlab.report.figures` or :func:`svg_of`), short notes, privacy-card
rows, and a ``data`` dict of machine-readable results. The report stores the section as JSON under
``sections[<key>]`` and renders every section the same way, so a new pillar needs no change to the
renderer.

>>> sec = Section(kind="unlearning", title="Machine unlearning")                  # doctest: +SKIP
>>> sec.tables.append(Table("Methods", ["method", "forget acc."], [["retrain", 0.91]]))
>>> report.sections["unlearning"] = sec.to_dict()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from privlab._json import jsonable
from privlab.errors import CorruptArtifactError
from privlab.report.figures import svg_of

__all__ = ["SECTION_SCHEMA_VERSION", "CardRow", "Figure", "Section", "Table", "svg_of"]

SECTION_SCHEMA_VERSION = 1


@dataclass
class Table:
    """A table: ``rows[i][j]`` is the value of column ``columns[j]``; numbers are formatted by the renderer.

    An interval may be given as a two-element list ``[low, high]`` in a cell.
    """

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"Table {self.title!r}: row {i} has {len(row)} cells, expected {len(self.columns)} "
                    f"(columns {self.columns})."
                )


@dataclass
class Figure:
    """An inline SVG figure (a string starting with ``<svg``) and its caption."""

    title: str
    svg: str
    caption: str = ""

    def __post_init__(self) -> None:
        if not self.svg.lstrip().startswith("<svg"):
            raise ValueError(f"Figure {self.title!r}: svg must be an inline SVG string starting with '<svg'.")


@dataclass
class CardRow:
    """One row of the report's privacy card contributed by a pillar (all values are display strings)."""

    model: str
    claimed: str = "–"
    measured: str = "–"
    utility: str = "–"
    verdict: str = "–"
    ok: bool | None = None  # True: consistent / passed; False: leak or violation; None: informational


@dataclass
class Section:
    """A pillar's part of the report. ``kind`` names the pillar; ``data`` holds its machine-readable results."""

    kind: str
    title: str
    summary: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    card: list[CardRow] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(
            {
                "section_schema_version": SECTION_SCHEMA_VERSION,
                "kind": self.kind,
                "title": self.title,
                "summary": self.summary,
                "tables": [vars(t) for t in self.tables],
                "figures": [vars(f) for f in self.figures],
                "notes": list(self.notes),
                "card": [vars(c) for c in self.card],
                "data": self.data,
            }
        )
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Section:
        """Rebuild (and validate) a section read from JSON; raises :class:`CorruptArtifactError`."""
        try:
            if d.get("section_schema_version") != SECTION_SCHEMA_VERSION:
                raise ValueError(f"section_schema_version {d.get('section_schema_version')!r}")
            return cls(
                kind=str(d["kind"]),
                title=str(d["title"]),
                summary=str(d.get("summary", "")),
                tables=[Table(**t) for t in d.get("tables", [])],
                figures=[Figure(**f) for f in d.get("figures", [])],
                notes=[str(n) for n in d.get("notes", [])],
                card=[CardRow(**c) for c in d.get("card", [])],
                data=dict(d.get("data", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptArtifactError(f"report section is malformed: {exc}") from exc
