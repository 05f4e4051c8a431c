"""Which operators a DP step adds: ``torch.profiler`` self times of a non-private step and a privlab step.

Both steps of one model are built from the same initial weights in one process, warmed up, then
profiled over ``--steps`` steps each. The table lists the operators by the change in their self
CPU time per step (ms) and their calls per step. The profiler adds its own cost to every call,
so small, frequent calls are over-counted: use this for where the time goes, not for ratios
(``run.py`` measures those).

    MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432 OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/dp_overhead/profile_ops.py --model gpt --mode privlab-per_layer
        # writes results/profile_ops_<model>_<mode>.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import run  # benchmark-local (the script's folder is on sys.path): the models and the step
import torch
from torch.profiler import ProfilerActivity, profile

from privlab.report.environment import cpu_model

HERE = Path(__file__).resolve().parent


def self_times(step: Callable[[], None], steps: int) -> dict[str, tuple[float, float]]:
    """``{operator: (self CPU ms per step, calls per step)}`` over ``steps`` profiled steps."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return {e.key: (e.self_cpu_time_total / steps / 1e3, e.count / steps) for e in prof.key_averages()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="gpt", choices=["cnn", "encoder", "gpt"])
    ap.add_argument("--mode", default="privlab-per_layer", help="A run.py mode, e.g. privlab-ghost.")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = {m: run.make_step(args.model, m) for m in ("nonprivate", args.mode)}
    for fn in steps.values():
        fn(), fn(), fn()  # warm-up
    base, dp = (self_times(fn, args.steps) for fn in steps.values())
    zero = (0.0, 0.0)
    rows = sorted(
        ({"op": k, "nonprivate_ms": base.get(k, zero)[0], "dp_ms": dp.get(k, zero)[0],
          "nonprivate_calls": base.get(k, zero)[1], "dp_calls": dp.get(k, zero)[1]} for k in set(base) | set(dp)),
        key=lambda r: -abs(r["dp_ms"] - r["nonprivate_ms"]),
    )
    total = {"nonprivate_ms": sum(v[0] for v in base.values()), "dp_ms": sum(v[0] for v in dp.values())}
    print(f"self CPU ms per step: non-private {total['nonprivate_ms']:.1f}, {args.mode} {total['dp_ms']:.1f}")
    for r in rows[: args.top]:
        print(f"{r['op'][:50]:50s} {r['nonprivate_ms']:8.2f} {r['dp_ms']:8.2f}  calls "
              f"{r['nonprivate_calls']:6.0f} {r['dp_calls']:6.0f}")
    out = HERE / "results" / f"profile_ops_{args.model}_{args.mode}.json"
    doc = {"command": "python benchmarks/dp_overhead/profile_ops.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items()), "cpu_model": cpu_model(), "total": total,
        "ops": rows[: args.top]}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
