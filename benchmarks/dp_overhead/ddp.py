"""Data-parallel DP-SGD step time: privlab on DistributedDataParallel vs non-private DDP and Opacus' DPDDP.

W ranks (one thread each, gloo, this host) hold the same global batch and each steps on its share
``x[rank::W]``. In the same processes every mode is built from the same initial weights and timed
round-robin, one step per mode per round (as in ``run.py``), the median per mode kept:

* ``nonprivate-ddp``: plain DDP (its gradient all-reduce during the backward pass);
* ``privlab-<clipping>-ddp``: ``make_private`` on the DDP model (clipping on each rank, the clipped
  sums added up by all-reduce, noise once). Per-layer clipping sends 1 MiB buckets during the
  backward pass; ``-b0.25`` builds the DDP model with ``bucket_cap_mb=0.25`` and ``-b1000`` (one
  buffer after the backward pass, as flat and ghost clipping do) with ``bucket_cap_mb=1000``;
* ``opacus-<mode>-ddp``: Opacus 1.6.0, ``DifferentiallyPrivateDistributedDataParallel`` + its
  ``PrivacyEngine`` (its distributed optimizers), grad-sample modes ``hooks``, ``functorch`` and
  ``ghost``; the ratio is to the fastest that runs.

For scale, one process then times non-private and privlab training on the whole batch with 1 and W
threads. Ratios are within one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dp_overhead/ddp.py --models cnn gpt   # writes results/ddp.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BEST = {"cnn": "ghost", "gpt": "per_layer", "encoder": "per_layer"}  # run.py's best privlab mode per model
OPACUS = ["opacus-hooks-ddp", "opacus-functorch-ddp", "opacus-ghost-ddp"]


def _ddp_step(model_name: str, mode: str, rank: int, world: int) -> Callable[[], None]:
    import torch
    from run import build  # benchmark-local
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from privlab.dp import make_private

    model, x, y, crit = build(model_name)
    xs, ys = x[rank::world], y[rank::world]
    loader = DataLoader(TensorDataset(x, y), batch_size=len(xs))  # per rank: q = 1 over the global batch
    if mode == "nonprivate-ddp":
        net: Any = nn.parallel.DistributedDataParallel(model)
        opt: Any = torch.optim.SGD(net.parameters(), lr=0.01)
    elif mode.startswith("privlab"):
        variant = mode.split("-ddp")[1]  # "": privlab's default buckets; "-b<MB>": bucket_cap_mb
        caps = {"bucket_cap_mb": float(variant[2:])} if variant.startswith("-b") else {}
        ddp = nn.parallel.DistributedDataParallel(model, **caps)
        pt = make_private(ddp, torch.optim.SGD(ddp.parameters(), lr=0.01), loader, noise_multiplier=1.0,
                          clipping=mode.split("-")[1], seed=0)
        net, opt = pt.model, pt.optimizer
    else:
        from opacus import PrivacyEngine
        from opacus.distributed import DifferentiallyPrivateDistributedDataParallel

        dpddp = DifferentiallyPrivateDistributedDataParallel(model)
        gsm = mode.split("-")[1]
        out = PrivacyEngine().make_private(module=dpddp, optimizer=torch.optim.SGD(dpddp.parameters(), lr=0.01),
                                           data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0,
                                           poisson_sampling=False, grad_sample_mode=gsm, criterion=crit)
        net, opt = out[0], out[1]
        if gsm == "ghost":
            crit = out[2]

    def step() -> None:
        opt.zero_grad()
        crit(net(xs), ys).backward()
        opt.step()

    return step


def ddp_worker(rank: int, world: int, model_name: str, modes: list[str], warmup: int, steps: int) -> dict[str, Any]:
    """Median step time of every mode on this rank, interleaved round-robin (all ranks in lockstep)."""
    import torch
    import torch.distributed as dist

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(HERE))
    from run import round_robin  # benchmark-local

    out: dict[str, Any] = {}
    fns: dict[str, Callable[[], None]] = {}
    for mode in modes:
        try:
            fns[mode] = _ddp_step(model_name, mode, rank, world)
            for _ in range(warmup):
                fns[mode]()
        except Exception as exc:  # an anchor that cannot run this model is reported, not fatal
            out[mode] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            fns.pop(mode, None)
        dist.barrier()
    for mode, ts in round_robin(fns, steps, dist.barrier).items():
        out[mode] = {"step_s": statistics.median(ts)}
    out["threads"] = torch.get_num_threads()
    return out


def one_process_worker(rank: int, world: int, model_name: str, modes: list[str], warmup: int, steps: int,
                       threads: int) -> dict[str, Any]:
    """The same global batch in one process (``run.make_step``), ``threads`` threads, round-robin."""
    import torch

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(HERE))
    from run import make_step, round_robin  # benchmark-local

    torch.set_num_threads(threads)
    fns = {m: make_step(model_name, m) for m in modes}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    return {m: {"step_s": statistics.median(ts)} for m, ts in round_robin(fns, steps).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["cnn", "gpt"], choices=sorted(BEST))
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ddp.json")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from privlab.report.environment import cpu_model
    from privlab.testing.data_parallel import run_ranks

    w = args.world_size
    result: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "cpu_model": cpu_model(),
                              "python": platform.python_version(), "world_size": w, "models": {}}
    for name in args.models:
        best = BEST[name]
        # per-layer clipping sends 1 MiB buckets during the backward pass; 0.25 MB buckets, and one buffer
        # after the backward pass (bucket_cap_mb=1000: the whole model in the last bucket) for comparison
        variants = [f"privlab-{best}-ddp-b0.25", f"privlab-{best}-ddp-b1000"] if best == "per_layer" else []
        modes = ["nonprivate-ddp", *variants, f"privlab-{best}-ddp", *OPACUS]
        outs = run_ranks(ddp_worker, w, (name, modes, args.warmup, args.steps), timeout=3600)
        bad = [o for o in outs if o.error is not None]
        if bad:
            raise SystemExit(f"{name}: rank {bad[0].rank} failed: {bad[0].error_type}: {bad[0].error}")
        ddp = outs[0].value
        single: dict[str, Any] = {}
        for threads in sorted({1, w}):
            one = run_ranks(one_process_worker, 1, (name, ["nonprivate", f"privlab-{best}"], args.warmup,
                                                    args.steps, threads), timeout=3600)[0]
            if one.error is not None:
                raise SystemExit(f"{name}: one process failed: {one.error}")
            single[f"{threads}_threads"] = one.value
        base = ddp["nonprivate-ddp"]["step_s"]
        rows = {}
        for mode in modes:
            r = dict(ddp[mode])
            if "step_s" in r:
                r["x_nonprivate_ddp"] = r["step_s"] / base
            rows[mode] = r
        priv = rows[f"privlab-{best}-ddp"]
        ran = [m for m in OPACUS if "step_s" in rows[m]]
        if ran:
            fastest = min(ran, key=lambda m: rows[m]["step_s"])
            priv["opacus_best"] = fastest
            priv["opacus_best_over_privlab"] = rows[fastest]["step_s"] / priv["step_s"]
        for key, one in single.items():
            priv[f"speedup_over_one_process_{key}"] = one[f"privlab-{best}"]["step_s"] / priv["step_s"]
        result["models"][name] = {"ddp": rows, "one_process": single}
        print(name, json.dumps(result["models"][name], indent=1))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
