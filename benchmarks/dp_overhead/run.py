"""DP-SGD step time and peak memory vs non-private training: privlab modes and Opacus 1.6.0 modes.

Timing: a timing process builds every mode of one model (same initial weights, same fixed batch),
warms each up, then times ``--steps`` rounds in which every mode does one step, round-robin, and
keeps each mode's median. Interleaving makes load from other jobs on a shared machine hit all modes
alike. The ratio to non-private training still moved by up to ~10% from one process to the next
(cause not pinned down; allocation history is a candidate), so ``--processes`` timing processes run
per model (models alternating), and the reported ratio is the median of the per-process ratios,
with their minimum and maximum.

Memory: each (model, mode) runs ``--mem-steps`` steps in a fresh subprocess and reports its peak
RSS (``resource.getrusage`` maxrss; tracemalloc does not see torch's CPU allocations) and the peak
above the RSS measured before the model was built. Ratios are to non-private training.

Timing runs with glibc malloc tuned to keep freed memory (``TUNED_MALLOC``, the reported ratio, same
settings for every mode) and, in one more process per model (``--allocator both``), with glibc's
defaults, under which heap trimming re-faults pages on some steps of some modes and adds noise of up
to ~10 ms per step here. Both ratios are in the JSON and the table.

Run: ``.venv/bin/python benchmarks/dp_overhead/run.py`` (writes results/overhead.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
MODELS = {"cnn": "SmallCNN, batch 256, 1x28x28", "encoder": "4-layer d=256 encoder classifier, seq 128, batch 32",
          "gpt": "privlab GPT (4 layers, d=128, vocab 96), seq 128, batch 32"}
MODES = ["nonprivate", "privlab-flat", "privlab-per_layer", "privlab-ghost",
         "opacus-hooks", "opacus-functorch", "opacus-ghost"]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build(model_name: str) -> tuple[Any, Any, Any, Any]:
    import torch
    from bench_models import BatchedPosGPT, EncoderClassifier  # benchmark-local models
    from torch import nn

    from privlab.models import SmallCNN
    from privlab.models.gpt import GPTConfig

    torch.manual_seed(0)
    if model_name == "cnn":
        model: nn.Module = SmallCNN()
        x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
        return model, x, y, nn.CrossEntropyLoss()
    if model_name == "encoder":
        model = EncoderClassifier(vocab=1000, d=256, n_layer=4, n_head=4, seq=128, classes=2)
        x, y = torch.randint(0, 1000, (32, 128)), torch.randint(0, 2, (32,))
        return model, x, y, nn.CrossEntropyLoss()
    model = BatchedPosGPT(GPTConfig())  # same function as privlab's GPT; batch-first positions for Opacus
    x = torch.randint(0, 96, (32, 128))
    y = torch.randint(0, 96, (32, 128))

    class TokenCE(nn.Module):
        def __init__(self, reduction: str = "mean") -> None:
            super().__init__()
            self.reduction = reduction

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            loss = nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1)  # (B,)
            return loss.mean() if self.reduction == "mean" else loss.sum() if self.reduction == "sum" else loss

    return model, x, y, TokenCE()


def make_step(model_name: str, mode: str) -> Callable[[], None]:
    """Build a fresh model (same init) wrapped for ``mode``; return a function doing one training step."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from privlab.dp import make_private

    model, x, y, crit = build(model_name)
    opt: Any = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))  # q = 1: fixed-size timing batches
    if mode.startswith("privlab"):
        pt = make_private(model, opt, loader, noise_multiplier=1.0, clipping=mode.split("-")[1], seed=0)
        model, opt = pt.model, pt.optimizer
    elif mode.startswith("opacus"):
        from opacus import PrivacyEngine

        gsm = mode.split("-")[1]
        out = PrivacyEngine().make_private(module=model, optimizer=opt, data_loader=loader, noise_multiplier=1.0,
                                           max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=gsm,
                                           criterion=crit)
        model, opt = out[0], out[1]
        if gsm == "ghost":
            crit = out[2]

    def step() -> None:
        opt.zero_grad()
        loss = crit(model(x), y)
        loss.backward()
        opt.step()

    return step


def _setup(threads: int) -> None:
    import warnings

    import torch

    with contextlib.suppress(ImportError):  # without Opacus: privlab modes only (--modes nonprivate privlab-...)
        import opacus  # noqa: F401  (imported by every worker so the base RSS is comparable)

    import privlab.dp  # noqa: F401

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)


def memory_worker(model_name: str, mode: str, steps: int, threads: int) -> dict[str, Any]:
    """Peak RSS of ``steps`` steps of one mode, in this fresh process."""
    _setup(threads)
    base = rss_mb()
    step = make_step(model_name, mode)
    for _ in range(steps):
        step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_rss_mb": peak, "base_rss_mb": base, "peak_above_base_mb": peak - base}


def timing_worker(model_name: str, modes: list[str], warmup: int, steps: int, threads: int) -> dict[str, Any]:
    """Median step time of every mode, steps interleaved round-robin so that load from other
    processes on a shared machine hits every mode alike."""
    _setup(threads)
    out: dict[str, Any] = {}
    fns: dict[str, Callable[[], None]] = {}
    for mode in modes:
        try:
            fns[mode] = make_step(model_name, mode)
            for _ in range(warmup):
                fns[mode]()
        except Exception as exc:  # an anchor that cannot run this model is reported, not fatal
            out[mode] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            fns.pop(mode, None)
    for mode, ts in round_robin(fns, steps).items():
        out[mode] = {"step_s": statistics.median(ts), "step_s_all": ts}
    return out


def round_robin(
    fns: dict[str, Callable[[], None]], steps: int, before: Callable[[], None] | None = None
) -> dict[str, list[float]]:
    """``steps`` rounds in which every step function runs once, in order; each call's seconds.
    ``before`` (untimed) runs before each call (e.g. a barrier of data-parallel ranks)."""
    times: dict[str, list[float]] = {m: [] for m in fns}
    for _ in range(steps):
        for mode, fn in fns.items():
            if before is not None:
                before()
            t0 = time.perf_counter()
            fn()
            times[mode].append(time.perf_counter() - t0)
    return times


# glibc malloc settings for the "tuned" timing run, applied to every mode alike: never return freed heap
# memory to the OS (trim) and keep blocks up to 32 MiB (the maximum) on the heap instead of mmap. With
# glibc's defaults, a step that frees several multi-MB tensors can shrink the heap and then fault the
# same pages back in on the next step; on this machine that added up to ~10 ms per step to some modes
# and not others, depending on the process's allocation history (the same role jemalloc/tcmalloc play
# in PyTorch's CPU performance guides).
TUNED_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
ALLOCATORS = {"tuned": TUNED_MALLOC, "default": {}}


def _sub(args: argparse.Namespace, extra: list[str], allocator: str = "default") -> dict[str, Any]:
    cmd = [sys.executable, __file__, *extra, "--warmup", str(args.warmup), "--steps", str(args.steps),
           "--threads", str(args.threads), "--modes", *args.modes]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)  # keep the caller's
    env.update({"OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": path, **ALLOCATORS[allocator]})
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode == 0:
        return dict(json.loads(p.stdout.strip().splitlines()[-1]))
    return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300]}


def timing_summary(processes: dict[str, list[dict[str, Any]]], runs: list[str], modes: list[str]) -> dict[str, Any]:
    """Per mode: the median over ``runs[0]``'s timing processes of the step time and of the ratio to
    non-private training in the same process, the ratios' minimum and maximum, and each other
    allocator's ratio (``time_ratio_<allocator>_malloc``, median over its processes)."""
    rows: dict[str, Any] = {}
    for mode in modes:
        errors = [p[mode]["error"] for ps in processes.values() for p in ps if "error" in p.get(mode, {})]
        per_alloc: dict[str, tuple[list[float], list[float]]] = {}
        for a in runs:
            ok = [p for p in processes[a] if "step_s" in p.get(mode, {}) and "step_s" in p.get("nonprivate", {})]
            ratios = [p[mode]["step_s"] / p["nonprivate"]["step_s"] for p in ok]
            per_alloc[a] = ([p[mode]["step_s"] for p in ok], ratios)
        steps, ratios = per_alloc[runs[0]]
        if not steps:
            rows[mode] = {"error": errors[0] if errors else "no timing process finished"}
            continue
        row: dict[str, Any] = {
            "step_s": statistics.median(steps),
            "time_ratio": statistics.median(ratios),
            "time_ratio_min": min(ratios),
            "time_ratio_max": max(ratios),
            "time_ratio_per_process": ratios,
            "step_s_per_process": steps,
        }
        for a in runs:
            if per_alloc[a][0]:
                row[f"step_s_{a}_malloc"] = statistics.median(per_alloc[a][0])
                row[f"time_ratio_{a}_malloc"] = statistics.median(per_alloc[a][1])
        rows[mode] = row
    return rows


def markdown_table(result: dict[str, Any]) -> str:
    """Time and memory ratios to non-private training, one row per (model, mode)."""
    lines = ["| model | mode | step (s) | time x (min-max over processes) | time x, default malloc | peak RSS (MB) | "
             "mem x | peak above base (MB) | above-base x |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, rows in result["results"].items():
        for mode, r in rows.items():
            if "step_s" not in r:
                lines.append(f"| {m} | {mode} | error: {r.get('error', '?')[:60]} | | | | | | |")
                continue
            lines.append(
                f"| {m} | {mode} | {r['step_s']:.3f} | {r.get('time_ratio', float('nan')):.2f}{_spread(r)} | "
                f"{_ratio(r, 'time_ratio_default_malloc')} | "
                f"{r['peak_rss_mb']:.0f} | {r.get('mem_ratio', float('nan')):.2f} | {r['peak_above_base_mb']:.0f} | "
                f"{r.get('mem_above_base_ratio', float('nan')):.2f} |"
            )
    return "\n".join(lines)


def _ratio(r: dict[str, Any], key: str) -> str:
    """``r[key]`` to two decimals, or ``-`` when that timing was not run."""
    return f"{r[key]:.2f}" if key in r else "-"


def _spread(r: dict[str, Any]) -> str:
    """`` (lo-hi)`` of the per-process ratios, when there were several processes (schema 3)."""
    if len(r.get("time_ratio_per_process", [])) < 2:
        return ""
    return f" ({r['time_ratio_min']:.2f}-{r['time_ratio_max']:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--modes", nargs="*", default=MODES)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed rounds (one step of every mode per round)")
    ap.add_argument("--processes", type=int, default=3,
                    help="timing processes per model with the tuned allocator (reported: median ratio, range)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mem-steps", type=int, default=3, help="steps run in each fresh memory subprocess")
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "MODE"), help="(internal) memory of one mode")
    ap.add_argument("--time-worker", metavar="MODEL", help="(internal) interleaved timing of all modes")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "overhead.json")
    ap.add_argument("--table", type=Path, help="print the markdown table of an existing result JSON and exit")
    ap.add_argument("--allocator", choices=["both", *ALLOCATORS], default="both",
                    help="timing runs: glibc malloc tuned (the reported ratio), default, or both")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    if args.worker:
        print(json.dumps(memory_worker(*args.worker, args.mem_steps, args.threads)))
        return
    if args.time_worker:
        print(json.dumps(timing_worker(args.time_worker, args.modes, args.warmup, args.steps, args.threads)))
        return
    if args.processes < 1:
        ap.error(f"--processes must be at least 1, got {args.processes}")
    runs = list(ALLOCATORS) if args.allocator == "both" else [args.allocator]
    # Timing processes, models alternating: the reported allocator's --processes, then one of the other.
    plan = [(runs[0], i) for i in range(args.processes)] + [(a, 0) for a in runs[1:]]
    timed: dict[str, dict[str, list[dict[str, Any]]]] = {m: {a: [] for a in runs} for m in args.models}
    for a, i in plan:
        for m in args.models:
            t = _sub(args, ["--time-worker", m], a)
            timed[m][a].append(t)
            print(m, f"time ({a} malloc, process {i + 1})",
                  json.dumps({k: v.get("step_s", v.get("error")) for k, v in t.items()}), flush=True)
    rows: dict[str, dict[str, Any]] = {}
    for m in args.models:
        rows[m] = timing_summary(timed[m], runs, args.modes)
        for mode in args.modes:
            if "step_s" not in rows[m].get(mode, {}):
                continue
            mem = _sub(args, ["--worker", m, mode, "--mem-steps", str(args.mem_steps)])
            rows[m][mode].update(mem if "error" not in mem else {"mem_error": mem["error"]})
            print(m, mode, json.dumps(mem), flush=True)
        base = rows[m].get("nonprivate", {})
        for r in rows[m].values():
            if "peak_rss_mb" in r and "peak_rss_mb" in base:
                r["mem_ratio"] = r["peak_rss_mb"] / base["peak_rss_mb"]
                r["mem_above_base_ratio"] = r["peak_above_base_mb"] / max(base["peak_above_base_mb"], 1e-9)
    import torch

    from privlab.report.environment import cpu_model

    result = {
        "schema_version": 3,
        "benchmark": "dp_overhead",
        "models": {k: MODELS[k] for k in args.models},
        "results": rows,
        "settings": {"warmup": args.warmup, "steps": args.steps, "threads": args.threads, "mem_steps": args.mem_steps,
                     "processes": args.processes,
                     "timing": f"{args.processes} processes per model with the {runs[0]} allocator (median of the "
                               "per-process ratios, min and max), one with each other allocator; modes interleaved "
                               "round-robin in each; memory: fresh process per mode, default malloc",
                     "allocators": {a: ALLOCATORS[a] for a in runs}, "reported_time_ratio": runs[0]},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_model": cpu_model(),
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))


if __name__ == "__main__":
    main()
