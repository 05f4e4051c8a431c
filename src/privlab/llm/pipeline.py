"""The LLM stage of ``privlab run``: each canary experiment cached by the stage cache, one report section."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from privlab.llm.config import LLMRunConfig
from privlab.llm.experiment import run_canary_experiment, with_dp
from privlab.llm.report import llm_section


def run_labels(cfg: LLMRunConfig) -> dict[str, Any]:
    """Label -> experiment config of every run the section compares."""
    base = with_dp(cfg.experiment, None)
    runs = {"non-private": base}
    if cfg.dp is not None:
        unit = "" if cfg.dp.privacy_unit == "example" else f" per {cfg.dp.privacy_unit}"
        runs[f"DP eps={cfg.dp.target_epsilon:g}{unit}"] = with_dp(cfg.experiment, cfg.dp)
    return runs


def llm_stage(cfg: LLMRunConfig, run_dir: Path, seed: int, progress: bool = False) -> dict[str, Any]:
    """Run (or load) every experiment of ``cfg`` and return the report section as a dict."""
    from privlab.pipeline.cache import stage  # here: privlab.pipeline imports this module (import cycle)

    results: dict[str, Any] = {}
    for i, (label, exp) in enumerate(run_labels(cfg).items()):
        exp = replace(exp, seed=seed)
        st = stage(run_dir, f"llm-{i}", {"experiment": asdict(exp)})
        if not st.done:
            st.begin()
            st.write_json("result.json", run_canary_experiment(exp, progress=progress))
            st.finish({"label": label})
        results[label] = st.read_json("result.json")
    return llm_section(results).to_dict()
