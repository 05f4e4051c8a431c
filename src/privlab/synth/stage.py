"""The ``synthetic:`` stage of ``privlab run``: cached releases -> the report's "synthetic" section."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from privlab.synth.config import SynthRunConfig
from privlab.synth.section import synth_section


def synthetic_stage(cfg: SynthRunConfig, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) every release of ``cfg`` and return the section's JSON form."""
    # imported here: experiment -> pipeline.cache -> pipeline.run -> this module would otherwise be a
    # cycle whenever privlab.synth.experiment is the first module imported (benchmarks/synth/run.py)
    from privlab.synth.experiment import run_synthetic

    return synth_section(run_synthetic(cfg, run_dir, progress=progress), asdict(cfg)).to_dict()
