"""Audit DP-SGD on MNIST at claimed epsilon 2, 4, 8: white-box / black-box, one-run / multi-run, and
the optimizer path (probe canaries through make_private, per clipping mode).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audit/run.py`` (about 5-15 min on 2 cores; see
README.md). ``--quick`` runs a smaller smoke configuration (not comparable to the table).

Every row is an epsilon lower bound at 95% confidence with the ratio lower bound / claimed epsilon.
The claim is the PLD accountant's epsilon (delta = 1e-5) for the noise actually used.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from privlab.audit import AuditSpec, audit_multi_run
from privlab.audit.blackbox import audit_dp_training_blackbox
from privlab.audit.canaries import dirac_score_model
from privlab.audit.dp_training import DPTrainingAudit, audit_dp_training
from privlab.audit.multi_run_training import audit_dp_training_multi_run, midpoint_threshold
from privlab.audit.optimizer_canaries import audit_dp_optimizer
from privlab.data import load_mnist
from privlab.models import MLP
from privlab.report.environment import environment

HERE = Path(__file__).parent
SCHEMA_VERSION = 1

# Configurations (fixed before any audited run; the one-run grid was chosen on the closed-form score
# model of privlab.audit.canaries, never on an audited run).
FULL: dict[str, Any] = {
    "white_box_one_run": {"train": 1000, "hidden": 128, "sample_rate": 0.2, "steps": 150, "lr": 0.5,
                          "canaries": 10_000, "canary_norm_multiplier": 10.0},
    "black_box_one_run": {"train": 2000, "hidden": 64, "sample_rate": 0.1, "steps": 300, "lr": 0.5,
                          "canaries": 1000},
    "white_box_multi_run": {"train": 64, "hidden": 8, "sample_rate": 1.0, "steps": 10, "lr": 0.5, "runs": 3000,
                            "model_runs": 100_000},
    # Probe canaries through make_private / DPOptimizer (the path users train with), per clipping mode.
    "optimizer_one_run": {"train": 1000, "hidden": 128, "batch_size": 150, "epochs": 20, "lr": 0.5,
                          "canaries": 1000, "clipping": ["flat", "ghost", "per_layer"]},
}
QUICK: dict[str, Any] = {
    "white_box_one_run": FULL["white_box_one_run"] | {"train": 500, "steps": 40, "canaries": 2000},
    "black_box_one_run": FULL["black_box_one_run"] | {"train": 500, "steps": 60, "canaries": 200},
    "white_box_multi_run": FULL["white_box_multi_run"] | {"runs": 200, "model_runs": 20_000},
    "optimizer_one_run": FULL["optimizer_one_run"] | {"train": 500, "epochs": 5, "canaries": 300},
}


def one_run_grid(m: int) -> list[tuple[int, int]]:
    return [(m // 200, m // 200), (m // 50, m // 50)]


def row(kind: str, a: DPTrainingAudit, seconds: float, **extra: Any) -> dict[str, Any]:
    res = a.gdp_audit if kind.endswith("gdp") and a.gdp_audit is not None else a.audit
    print(f"{kind:<36} claimed {a.claimed_epsilon:.3f} lb {res.epsilon_lower_bound:.3f} ({seconds:.0f} s)", flush=True)
    return {
        "audit": kind,
        "claimed_epsilon": a.claimed_epsilon,
        "epsilon_lower_bound": res.epsilon_lower_bound,
        "confidence": res.confidence,
        "ratio": res.epsilon_lower_bound / a.claimed_epsilon,
        "method": res.method,
        "runs": a.runs,
        "canaries": a.canaries,
        "noise_multiplier": a.noise_multiplier,
        "sample_rate": a.sample_rate,
        "steps": a.steps,
        "test_accuracy": a.test_accuracy,
        "seconds": round(seconds, 1),
        "details": res.to_dict()["details"],
        **extra,
    }


def model_based(a: DPTrainingAudit, cfg: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Multi-run bounds on ``model_runs`` runs sampled from the closed form (*), checked against the real runs.

    Not evidence about the implementation: it audits the accountant's claim for the idealised
    mechanism. The KS p-values compare the real IN/OUT scores with the model's.
    """
    assert a.scores is not None and a.included is not None  # set by audit_dp_training_multi_run
    rng = np.random.default_rng(seed + 12345)
    R = cfg["model_runs"]
    inc = np.zeros(R, dtype=bool)
    inc[: R // 2] = True
    kw = {"sample_rate": a.sample_rate, "steps": a.steps, "noise_multiplier": a.noise_multiplier,
          "max_grad_norm": 1.0, "lr": cfg["lr"], "train_size": cfg["train"], "canary_norm_multiplier": 10.0,
          "fault": None}
    sim = dirac_score_model(inc, rng=rng, **kw)
    ks_in = stats.ks_2samp(a.scores[a.included], sim[inc]).pvalue
    ks_out = stats.ks_2samp(a.scores[~a.included], sim[~inc]).pvalue
    out = []
    t = midpoint_threshold(cfg["lr"], a.sample_rate, cfg["train"], a.steps, 1.0)
    for bound in ("eps_delta", "gdp"):
        r = audit_multi_run(sim[inc], sim[~inc], delta=a.delta, alpha=0.05, seed=seed, bound=bound,
                            threshold=t if bound == "gdp" else None, claimed_epsilon=a.claimed_epsilon)
        out.append({
            "audit": f"white_box_multi_run_model_{bound}", "claimed_epsilon": a.claimed_epsilon,
            "epsilon_lower_bound": r.epsilon_lower_bound, "confidence": r.confidence,
            "ratio": r.epsilon_lower_bound / a.claimed_epsilon, "method": r.method, "runs": R, "canaries": 1,
            "noise_multiplier": a.noise_multiplier, "sample_rate": a.sample_rate, "steps": a.steps,
            "ks_pvalue_in": float(ks_in), "ks_pvalue_out": float(ks_out), "details": r.to_dict()["details"],
        })
    return out


LABELS = {
    "white_box_one_run": "white-box one-run (Dirac, m=10k)",
    "black_box_one_run": "black-box one-run (mislabelled, m=1k)",
    "white_box_multi_run_eps_delta": "white-box multi-run, eps_delta (R=3000 real)",
    "white_box_multi_run_gdp": "white-box multi-run, GDP (R=3000 real)",
    "white_box_multi_run_model_eps_delta": "closed-form model, eps_delta (R=100k, not evidence)",
    "white_box_multi_run_model_gdp": "closed-form model, GDP (R=100k, not evidence)",
    "optimizer_one_run_flat": "optimizer path one-run, flat (probe canaries, m=1k)",
    "optimizer_one_run_ghost": "optimizer path one-run, ghost (probe canaries, m=1k)",
    "optimizer_one_run_per_layer": "optimizer path one-run, per_layer (probe canaries, m=1k)",
}


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows: audit; columns: claimed epsilon -> "lower bound (ratio)"."""
    claims = sorted({round(r["claimed_epsilon"], 1) for r in rows})
    lines = ["| audit (confidence 95%) | " + " | ".join(f"eps {c:g}: lb (ratio)" for c in claims) + " |",
             "|---" * (len(claims) + 1) + "|"]
    for kind, label in LABELS.items():
        cells = []
        for c in claims:
            hit = [r for r in rows if r["audit"] == kind and round(r["claimed_epsilon"], 1) == c]
            cells.append(f"{hit[0]['epsilon_lower_bound']:.2f} ({hit[0]['ratio']:.2f})" if hit else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epsilons", type=float, nargs="+", default=[4.0, 2.0, 8.0])
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small smoke configuration")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--table", type=Path, default=None, help="print the markdown table of a result JSON and exit")
    args = ap.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())["rows"]))
        return
    torch.set_num_threads(args.threads)
    cfgs = QUICK if args.quick else FULL
    out_path = args.out or HERE / "results" / ("audit_quick.json" if args.quick else "audit.json")

    mnist, test = load_mnist("train"), load_mnist("test").head(2000)
    pool = mnist.subset(torch.arange(50_000, 60_000))  # black-box canaries: never in a training set
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, eps in enumerate(args.epsilons):
        # one seed per claim: with a shared seed every claim would reuse the same noise draws
        claim = {"target_epsilon": eps, "delta": args.delta, "seed": args.seed + i}

        def spec(c: dict[str, Any], claim: dict[str, Any] = claim, **kw: Any) -> AuditSpec:
            return AuditSpec(lambda c=c: MLP(784, (c["hidden"],), 10), mnist.head(c["train"]), lr=c["lr"],
                             **{"sample_rate": c.get("sample_rate"), "steps": c.get("steps"), **claim, **kw})

        c = cfgs["white_box_one_run"]
        t = time.perf_counter()
        a = audit_dp_training(
            spec(c, test=test), canaries=c["canaries"], canary_norm_multiplier=c["canary_norm_multiplier"],
            grid=one_run_grid(c["canaries"]), progress=False,
        )
        rows.append(row("white_box_one_run", a, time.perf_counter() - t))

        c = cfgs["black_box_one_run"]
        t = time.perf_counter()
        a = audit_dp_training_blackbox(spec(c, test=test), canary_pool=pool, canaries=c["canaries"], progress=False)
        rows.append(row("black_box_one_run", a, time.perf_counter() - t))

        c = cfgs["white_box_multi_run"]
        t = time.perf_counter()
        a = audit_dp_training_multi_run(spec(c), runs=c["runs"], progress=False)
        sec = time.perf_counter() - t
        rows.append(row("white_box_multi_run_eps_delta", a, sec))
        rows.append(row("white_box_multi_run_gdp", a, sec))
        rows.extend(model_based(a, c, args.seed + i))

        c = cfgs["optimizer_one_run"]
        for mode in c["clipping"]:
            t = time.perf_counter()
            # batch_size / epochs over the data plus the ~canaries / 2 IN probes, as make_private counts them
            n = c["train"] + c["canaries"] // 2
            q, steps = c["batch_size"] / n, c["epochs"] * round(n / c["batch_size"])
            a = audit_dp_optimizer(
                spec(c, sample_rate=q, steps=steps, clipping=mode), canaries=c["canaries"], progress=False
            )
            rows.append(row(f"optimizer_one_run_{mode}", a, time.perf_counter() - t))
        for r in rows[-2:]:
            print(f"{r['audit']:<36} claimed {eps:g} lb {r['epsilon_lower_bound']:.3f}", flush=True)
        write(out_path, args, cfgs, rows, start)


def write(out_path: Path, args: argparse.Namespace, cfgs: dict[str, Any], rows: list[dict[str, Any]],
          start: float) -> None:
    """Write the result so far (rewritten after each epsilon, so a killed run keeps what it measured)."""

    result = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "audit",
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audit/run.py" + (" --quick" if args.quick else ""),
        "machine": environment() | {"torch_threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")},
        "data": "MNIST train rows [0, n) for training (n per audit), rows [50000, 60000) as the black-box canary "
                "pool, test rows [0, 2000) for accuracy",
        "configs": cfgs,
        "delta": args.delta,
        "seed": args.seed,
        "seeds": "claim i (in --epsilons order) uses seed + i",
        "rows": rows,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    print(f"wrote {out_path} ({result['total_seconds']} s)", flush=True)
    print(markdown_table(rows), flush=True)


if __name__ == "__main__":
    main()
