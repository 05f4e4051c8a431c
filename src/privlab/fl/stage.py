"""The ``federated:`` stage of ``privlab run``: one cached federated run (plus inversion attacks) -> report section."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from privlab.fl.config import FedConfig


def federated_stage(
    cfg: FedConfig,
    run_dir: Path,
    progress: bool = True,
    *,
    inversion_targets: int = 6,
    runner: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` on Flower (cached under ``run_dir/federated-*``) and return the report section as a dict.

    The section carries the per-round accuracy and user-level epsilon, and a gradient-inversion
    experiment (DLG, batch of 1) against the initial global model without defence, under the
    run's DP noise (z = 1 when the run has no DP) and under secure aggregation of m clients, and a
    subject-level membership attack on the final global model.
    ``runner`` replaces :func:`run_federated` (tests).
    """

    from privlab.fl.report import fl_section
    from privlab.fl.simulation import run_federated
    from privlab.fl.subject_mia import subject_mia_experiment
    from privlab.pipeline.cache import stage

    st = stage(
        run_dir, "federated", {"federated": cfg.to_dict(), "inversion_targets": inversion_targets, "subject_mia": 1}
    )
    if st.done:
        cached: dict[str, Any] = st.read_json("section.json")
        return cached
    st.begin()
    res = (runner or run_federated)(cfg, progress=progress)
    inv = [] if cfg.dataset == "shakespeare" else _inversions(cfg, res, inversion_targets)  # images only
    subject = subject_mia_experiment(cfg, res.state, seed=cfg.seed)
    section = fl_section(res, inv, subject).to_dict()
    st.write_json("section.json", section)
    st.finish({"accuracy": res.accuracy, "epsilon": res.epsilon})
    return section


def _inversions(cfg: FedConfig, res: Any, targets: int) -> list[Any]:
    """DLG on a batch of 1 without defence, under the run's DP noise (z = 1 without DP) and under SecAgg of m."""
    from privlab.data import load_dataset
    from privlab.fl.client import build_fl_model
    from privlab.fl.inversion import InversionConfig
    from privlab.fl.leakage import DEFENCES, inversion_experiment

    model = build_fl_model(cfg)
    test = load_dataset(cfg.dataset, "test")
    model.load_state_dict(res.state)  # the final global model doubles as the recognisability classifier
    attacked = build_fl_model(cfg, seed=cfg.seed + 1)
    z = 1.0 if res.noise_multiplier is None else res.noise_multiplier  # z = 0 is a run without noise
    clip = cfg.dp.clip_norm if cfg.dp is not None else 1.0
    return [
        inversion_experiment(
            attacked, test.head(max(targets, cfg.clients_per_round)), model, defence=d,
            num_targets=targets, cfg=InversionConfig(method="dlg", steps=100, lr=1.0),
            noise_multiplier=z, clip_norm=clip, clients_per_round=cfg.clients_per_round,
            secagg_clients=cfg.clients_per_round, mean_image=test.x[5000:].mean(0, keepdim=True),
        )
        for d in DEFENCES
    ]
