"""Config-driven runs: ``privlab run CONFIG.yaml`` = data -> targets -> references -> attacks ->
audits -> report, cached by configuration hash and resumable."""

from privlab.pipeline.config import (
    AttackConfig,
    AuditConfig,
    DataConfig,
    DPConfig,
    RunConfig,
    TargetConfig,
    TrainSpec,
    config_from_dict,
    load_config,
)
from privlab.pipeline.run import RunResult, run

__all__ = [
    "AttackConfig",
    "AuditConfig",
    "DPConfig",
    "DataConfig",
    "RunConfig",
    "RunResult",
    "TargetConfig",
    "TrainSpec",
    "config_from_dict",
    "load_config",
    "run",
]
