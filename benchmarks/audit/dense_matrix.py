"""White-box Dirac audit on dense data (issue 14): bound per data type x fault x score, one JSON file.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audit/dense_matrix.py`` (about 7 min on a loaded
2-core machine). Same configuration as ``tests/integration/test_audit_data_matrix.py``: 1,000 training
rows, q = 0.1, T = 30, sigma = 1.5045 (PLD epsilon 2 at delta 1e-5), default 1,000 canaries, 95%
confidence, seed 0. Scores: ``likelihood_ratio`` (default), ``final`` (final-minus-initial, data
contribution removed), ``raw`` (final-minus-initial with the data's drift left in: the score before
the fix). ``--config big``: 3,000 rows, T = 100 (sigma 2.2478), correct and no_noise, likelihood-ratio
and raw scores only (about 10 min). Data: Adult, image, text (the test matrix) and the Gaussian
features of the issue 14 report. Every row is an epsilon lower bound; ``power`` is the bound against a noiseless run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from privlab.audit import AuditSpec
from privlab.audit.dp_training import SCORES, audit_dp_training
from privlab.report.environment import environment
from privlab.testing.audit_data import AUDIT_DATA, audit_data

HERE = Path(__file__).parent
SIGMA = {30: 1.5045, 100: 2.2478}  # PLD epsilon 2 at q = 0.1, delta 1e-5
CONFIGS: dict[str, dict[str, Any]] = {
    "small": {"n": 1000, "steps": 30, "faults": (None, "no_noise", "no_clipping"), "scores": SCORES},
    "big": {"n": 3000, "steps": 100, "faults": (None, "no_noise"), "scores": ("likelihood_ratio", "raw")},
}


def run(kinds: tuple[str, ...], seed: int, config: str) -> list[dict[str, Any]]:
    cfg = CONFIGS[config]
    rows = []
    for kind in kinds:
        train, factory = audit_data(kind, n=cfg["n"], seed=seed)
        sigma = SIGMA[cfg["steps"]]
        spec = AuditSpec(factory, train, sample_rate=0.1, steps=cfg["steps"], noise_multiplier=sigma, seed=seed)
        for fault in cfg["faults"]:
            for score in cfg["scores"]:
                t0 = time.perf_counter()
                res = audit_dp_training(spec, fault=fault, score=score, progress=False)
                row = {
                    "config": config,
                    "rows": cfg["n"],
                    "steps": cfg["steps"],
                    "data": kind,
                    "fault": fault,
                    "score": score,
                    "seed": seed,
                    "claimed_epsilon": res.claimed_epsilon,
                    "epsilon_lower_bound": res.audit.epsilon_lower_bound,
                    "power_epsilon": res.power,
                    "verdict": res.verdict,
                    "seconds": time.perf_counter() - t0,
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out_path = args.out or HERE / "results" / f"dense_matrix_{args.config}.json"
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = run(AUDIT_DATA, args.seed, args.config)
    out = {"schema_version": 1, "environment": environment(), "seconds": time.perf_counter() - t0, "rows": rows}
    out_path.write_text(json.dumps(out, indent=1))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
