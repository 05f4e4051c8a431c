"""Stage cache: each stage's outputs live in ``<run dir>/<stage>-<key>/`` and count as done only
when ``done.json`` (written last, atomically) is present and names the same key.

The key is a hash of exactly the configuration the stage depends on, so a changed config re-runs
what it affects and nothing else, and a killed stage (no ``done.json``) is redone on the next run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from privlab.errors import CorruptArtifactError
from privlab.report.schema import canonical_json, config_hash


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
        return bool(info.get("key") == self.key)

    def begin(self) -> Path:
        """Start (or restart) the stage with an empty directory."""
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
