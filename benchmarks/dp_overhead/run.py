"""DP-SGD step time and peak memory vs non-private training: privlab modes and Opacus 1.6.0 modes.

Each (model, mode) runs in a fresh subprocess (so peak RSS is its own): build model and a fixed
batch, measure RSS, run ``--warmup`` then ``--steps`` timed training steps, report the median step
time and the peak RSS above the pre-training RSS (``resource.getrusage`` maxrss; tracemalloc does
not see torch's CPU allocations). Ratios are to non-private training measured in the same run.

Run: ``.venv/bin/python benchmarks/dp_overhead/run.py`` (writes results/overhead.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
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


def worker(model_name: str, mode: str, warmup: int, steps: int, threads: int) -> dict[str, Any]:
    import warnings

    import opacus  # noqa: F401  (imported by every mode so the base RSS is comparable)
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import privlab.dp  # noqa: F401

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    model, x, y, crit = build(model_name)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))  # q = 1: fixed-size timing batches
    if mode.startswith("privlab"):
        from privlab.dp import make_private

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

    base = rss_mb()
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_s": statistics.median(times), "peak_rss_mb": peak, "base_rss_mb": base,
            "peak_above_base_mb": peak - base}


def run_worker(model: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", model, mode, "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(HERE)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode == 0:
        return dict(json.loads(p.stdout.strip().splitlines()[-1]))
    return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--modes", nargs="*", default=MODES)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds; the fastest round is kept")
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "MODE"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "overhead.json")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.warmup, args.steps, args.threads)))
        return
    rows: dict[str, dict[str, Any]] = {m: {} for m in args.models}
    for _ in range(args.repeats):
        for m in args.models:
            for mode in args.modes:
                r = run_worker(m, mode, args)
                prev = rows[m].get(mode)
                if prev is None or ("step_s" in r and ("step_s" not in prev or r["step_s"] < prev["step_s"])):
                    rows[m][mode] = r
                print(m, mode, json.dumps(r), flush=True)
    for m in args.models:
        base = rows[m].get("nonprivate", {})
        for r in rows[m].values():
            if "step_s" in r and "step_s" in base:
                r["time_ratio"] = r["step_s"] / base["step_s"]
                r["mem_ratio"] = r["peak_rss_mb"] / base["peak_rss_mb"]
                r["mem_above_base_ratio"] = r["peak_above_base_mb"] / max(base["peak_above_base_mb"], 1e-9)
    import torch

    result = {
        "schema_version": 1,
        "benchmark": "dp_overhead",
        "models": {k: MODELS[k] for k in args.models},
        "results": rows,
        "settings": {"warmup": args.warmup, "steps": args.steps, "threads": args.threads, "repeats": args.repeats},
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
