"""Stage cache: each stage's outputs live in ``<run dir>/<stage>-<key>/`` and count as done only
when ``done.json`` (written last, atomically) is present and names the same key.

The key is a hash of exactly the configuration the stage depends on, so a changed config re-runs
what it affects and nothing else, and a killed stage (no ``done.json``) is redone on the next run.

Inside :func:`record_stages`, every stage found done (``reused``) or started (``recomputed``, with
the reason: first run, changed configuration, or an interrupted earlier attempt) is recorded, so
a run can say what it reused and what it recomputed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privlab.errors import CorruptArtifactError
from privlab.report.schema import canonical_json, config_hash


@dataclass(frozen=True)
class StageEvent:
    """``stage`` was ``reused`` (cached) or ``recomputed`` (``reason``: why it was not cached)."""

    stage: str
    status: str
    reason: str = ""


_LOG: ContextVar[tuple[list[StageEvent], Callable[[StageEvent], None] | None] | None] = ContextVar(
    "privlab_stage_log", default=None
)


@contextlib.contextmanager
def record_stages(on_event: Callable[[StageEvent], None] | None = None) -> Iterator[list[StageEvent]]:
    """Collect the :class:`StageEvent` of every stage checked or started inside (each stage once)."""
    events: list[StageEvent] = []
    token = _LOG.set((events, on_event))
    try:
        yield events
    finally:
        _LOG.reset(token)


def _record(event: StageEvent) -> None:
    log = _LOG.get()
    if log is None or any(e.stage == event.stage and e.status == event.status for e in log[0]):
        return
    log[0].append(event)
    if log[1] is not None:
        log[1](event)


@dataclass(frozen=True)
class Stage:
    """A cache slot for one stage: ``path`` holds its files once :meth:`finish` has run."""

    name: str
    key: str
    path: Path

    @property
    def done(self) -> bool:
        marker = self.path / "done.json"
        if not marker.exists():
            return False
        try:
            info = json.loads(marker.read_text())
        except json.JSONDecodeError:
            return False
        if info.get("key") != self.key:
            return False
        _record(StageEvent(self.name, "reused"))
        return True

    def begin(self) -> Path:
        """Start (or restart) the stage with an empty directory."""
        if self.path.exists():
            reason = "an earlier run was interrupted during it"
        elif any(
            len(k := d.parent.name[len(self.name) + 1 :]) == 16 and k != self.key
            for d in self.path.parent.glob(f"{self.name}-*/done.json")
        ):
            reason = "its configuration changed"
        else:
            reason = "not run before"
        _record(StageEvent(self.name, "recomputed", reason))
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        return self.path

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Mark the stage complete (the last write of the stage)."""
        tmp = self.path / "done.json.tmp"
        tmp.write_text(json.dumps({"stage": self.name, "key": self.key, "summary": summary or {}}, indent=2))
        tmp.replace(self.path / "done.json")

    def read_json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CorruptArtifactError(f"cached {self.name} output {self.path / name} is unreadable: {exc}") from exc

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path / name
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(json.loads(canonical_json(obj)), indent=2, sort_keys=True))
        tmp.replace(p)
        return p


def stage(run_dir: Path, name: str, depends_on: Any) -> Stage:
    """The cache slot of stage ``name`` for the configuration ``depends_on``."""
    key = config_hash(depends_on)[:16]
    return Stage(name, key, run_dir / f"{name}-{key}")
