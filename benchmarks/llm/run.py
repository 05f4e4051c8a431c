"""Language-model privacy benchmark: canary exposure and extraction, MIA with the blind baseline,
and the cost of DP fine-tuning (ghost clipping, LoRA) against non-private fine-tuning.

Parts (each writes ``results/<part>.json`` with the machine description):

* ``canaries``: privlab's small GPT trained from scratch on Shakespeare with digit canaries and
  faker PII at 1/4/16/64 repetitions, non-private and with DP-SGD (epsilon 8 and 2), through
  :func:`privlab.llm.experiment.run_canary_experiment`. Exposure curves, extraction rates, PII games,
  MIA (loss, zlib, Min-K%, Min-K%++) and the blind baseline, validation perplexity (and the ratio
  DP / non-private). Figures: ``results/exposure.png``, ``results/roc.png``.
* ``shift``: the blind-baseline check on a deliberately shifted split (members from the first
  plays, non-members from the last ones) beside the random split of the same size.
* ``overhead``: time per step and peak memory of fine-tuning, one fresh subprocess per
  (model, mode): non-private full, DP ghost full, non-private LoRA, DP LoRA (ghost), on the small
  GPT and on SmolLM2-135M; ratios to non-private full fine-tuning of the same model.
* ``smollm2``: the canary experiment with SmolLM2-135M fine-tuned (short; ``--smollm2-steps``).
* ``units``: the ``canaries`` DP run at each ``--epsilons`` with ``privacy_unit`` example and secret
  (each canary's copies one unit, McMahan et al. 2018), same expected batch and steps:
  ``results/units.json``.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llm/run.py [--parts canaries,shift,overhead,smollm2]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def machine() -> dict[str, Any]:
    import torch

    from privlab.report.environment import environment

    return environment() | {"torch_threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}


def write(name: str, obj: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(obj | {"machine": machine()}, indent=1, default=str))
    print(f"wrote results/{name}.json", flush=True)


def _gpt_config(steps: int, batch: int, seed: int) -> Any:
    from privlab.llm.config import CanaryExperimentConfig, FineTuneConfig

    return CanaryExperimentConfig(train=FineTuneConfig(steps=steps, batch_size=batch, lr=3e-3, seq_len=64), seed=seed)


def part_canaries(args: argparse.Namespace) -> None:
    from privlab.llm.config import DPSpec
    from privlab.llm.experiment import run_canary_experiment, with_dp

    runs = {"non-private": with_dp(_gpt_config(args.steps, 32, args.seed), None)}
    for eps in args.epsilons:
        runs[f"DP eps={eps:g}"] = with_dp(
            _gpt_config(args.dp_steps, args.dp_batch, args.seed), DPSpec(target_epsilon=eps)
        )
    results = {}
    for label, cfg in runs.items():
        t = time.perf_counter()
        results[label] = run_canary_experiment(cfg, progress=False)
        r = results[label]
        print(
            f"{label}: {time.perf_counter() - t:.0f} s, exposure",
            {k: round(v["mean"], 2) for k, v in r["exposure"]["curve"].items()},
            flush=True,
        )
    base = results["non-private"]["validation_perplexity"]
    summary = {
        label: {
            "exposure_mean": {str(k): v["mean"] for k, v in r["exposure"]["curve"].items()},
            "extracted_digits_any_method": {
                str(k): max(v["greedy"], v["beam"], v["sample"]) for k, v in r["extraction"]["rates_digits"].items()
            },
            "extracted_all_any_method": {
                str(k): max(v["greedy"], v["beam"], v["sample"]) for k, v in r["extraction"]["rates"].items()
            },
            "mia_auc": {n: a["metrics"]["auc"] for n, a in r["mia"].items()},
            "blind_auc": r["blind"]["metrics"]["auc"],
            "validation_perplexity": r["validation_perplexity"],
            "perplexity_ratio_to_nonprivate": r["validation_perplexity"] / base,
            "epsilon": r["training"]["epsilon"],
            "noise_multiplier": r["training"]["noise_multiplier"],
            "train_seconds": r["training"]["seconds"],
        }
        for label, r in results.items()
    }
    for r in results.values():
        r.pop("membership", None)
        for a in r["mia"].values():
            a.pop("scores", None)
    write("canaries", {"summary": summary, "results": results})
    figures(results)


def figures(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, r in results.items():
        c = r["exposure"]["curve"]
        reps = sorted(int(k) for k in c)
        ax.plot(reps, [c[k]["mean"] if k in c else c[str(k)]["mean"] for k in reps], marker="o", label=label)
    first = next(iter(results.values()))
    ax.axhline(first["exposure"]["canaries"][0]["max_exposure"], color="grey", ls=":", label="maximum")
    ax.axhline(first["exposure"]["chance"], color="grey", ls="--", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("repetitions")
    ax.set_ylabel("exposure (bits)")
    ax.set_title("small GPT on Shakespeare: canary exposure")
    ax.legend(fontsize=8)
    fig.savefig(RESULTS / "exposure.png", dpi=110, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for label, r in results.items():
        for name in ("loss", "min_k_pp"):
            m = r["mia"][name]["metrics"]
            ax.plot(m["roc"]["fpr"], m["roc"]["tpr"], label=f"{label} {name} ({m['auc']:.2f})")
    ax.plot([1e-3, 1], [1e-3, 1], ls="--", color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-2, 1)
    ax.set_ylim(1e-2, 1)
    ax.set_xlabel("FPR")
    ax.set_ylabel("TPR")
    ax.legend(fontsize=6)
    ax.set_title("LLM membership inference (document level)")
    fig.savefig(RESULTS / "roc.png", dpi=110, bbox_inches="tight")


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    t = r["training"]
    return {
        "exposure_mean": {str(k): v["mean"] for k, v in r["exposure"]["curve"].items()},
        "exposure_per_canary": {
            str(c["repetitions"]): [
                x["exposure"] for x in r["exposure"]["canaries"] if x["repetitions"] == c["repetitions"]
            ]
            for c in r["exposure"]["canaries"]
        },
        "extracted_all_any_method": {
            str(k): max(v["greedy"], v["beam"], v["sample"]) for k, v in r["extraction"]["rates"].items()
        },
        "validation_perplexity": r["validation_perplexity"],
        "mia_auc": {n: a["metrics"]["auc"] for n, a in r["mia"].items()},
        **{k: t[k] for k in ("privacy_unit", "num_units", "epsilon", "delta", "noise_multiplier", "sample_rate")},
        "train_seconds": t["seconds"],
    }


def part_units(args: argparse.Namespace) -> None:
    from privlab.llm.config import DPSpec
    from privlab.llm.experiment import run_canary_experiment, with_dp

    summary: dict[str, Any] = {}
    for seed in args.unit_seeds or [args.seed]:
        for eps in args.epsilons:
            for unit in args.unit_kinds.split(","):
                whole = args.unit_per_unit == "all" and unit != "example"
                label = f"DP eps={eps:g} unit={unit}{' (all windows, flat)' if whole else ''} seed={seed}"
                dp = DPSpec(target_epsilon=eps, privacy_unit=unit, delta=args.unit_delta)
                if whole:
                    dp = DPSpec(
                        target_epsilon=eps, privacy_unit=unit, delta=args.unit_delta, clipping="flat", per_unit="all"
                    )
                cfg = with_dp(_gpt_config(args.dp_steps, args.dp_batch, seed), dp)
                t = time.perf_counter()
                summary[label] = _summary(run_canary_experiment(cfg, progress=False))
                print(f"{label}: {time.perf_counter() - t:.0f} s", summary[label]["exposure_mean"], flush=True)
    write(
        args.units_out,
        {
            "summary": summary,
            "setup": f"small GPT (2 layers, d=128) on 60,000 Shakespeare characters with digit canaries and PII "
            f"at 1/4/16/64 copies; DP-SGD {args.dp_steps} steps, expected batch {args.dp_batch} (windows for "
            "unit=example, units otherwise: one window per sampled unit, or with --unit-per-unit all every "
            "window of a sampled unit, their summed gradient clipped, flat clipping), ghost clipping C=1, PLD; "
            f"delta {args.unit_delta or '1/(10 N), N = number of units'}",
        },
    )


def part_shift(args: argparse.Namespace) -> None:
    import numpy as np

    from privlab.data import load_shakespeare_text
    from privlab.llm.blind import blind_baseline
    from privlab.llm.experiment import split_documents

    docs = split_documents(load_shakespeare_text(), 256)
    n = 150
    rng = np.random.default_rng(args.seed)
    head = docs[: len(docs) // 10]
    tail = docs[-len(docs) // 10 :]
    rand = [docs[i] for i in rng.permutation(len(docs))[: 2 * n]]
    shifted = blind_baseline(
        [head[i] for i in rng.permutation(len(head))[:n]], [tail[i] for i in rng.permutation(len(tail))[:n]], warn=False
    )
    random = blind_baseline(rand[:n], rand[n:], warn=False)
    out = {
        "shifted": {
            "auc": shifted.metrics.auc,
            "auc_ci": shifted.metrics.auc_ci,
            "fires": shifted.fires,
            "message": shifted.message,
        },
        "random": {
            "auc": random.metrics.auc,
            "auc_ci": random.metrics.auc_ci,
            "fires": random.fires,
            "message": random.message,
        },
        "split": "shifted: members from the first 10% of the corpus's documents, non-members from the last 10%",
    }
    print(out, flush=True)
    write("shift", out)


def overhead_worker(model: str, mode: str, steps: int) -> dict[str, Any]:
    import torch

    from privlab.llm.config import CanaryExperimentConfig, DPSpec, FineTuneConfig
    from privlab.llm.experiment import build_data, build_model
    from privlab.llm.finetune import fine_tune

    torch.manual_seed(0)
    exp = CanaryExperimentConfig(model="smollm2" if model == "smollm2" else "gpt", corpus_chars=20_000, gpt_layers=4)
    data = build_data(exp)
    lm = build_model(exp, data)
    ids = torch.tensor(lm.tokenizer.encode(data.train_text), dtype=torch.long)
    batch = 8 if model == "smollm2" else 32
    lora = 8 if "lora" in mode else 0
    dp = DPSpec(target_epsilon=8.0, clipping=mode.split("-")[1]) if mode.startswith("dp") else None
    cfg = FineTuneConfig(steps=steps, batch_size=batch, seq_len=64, lr=1e-4, lora_r=lora, dp=dp)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = fine_tune(lm, ids, cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": model,
        "mode": mode,
        "steps": res.steps,
        "batch_size": batch,
        "seq_len": 64,
        "seconds_per_step": statistics.median(res.step_seconds[1:] or res.step_seconds),
        # Poisson DP batches vary in size: the time per window, scaled to the expected batch, compares fairly
        "seconds_per_expected_batch": batch
        * statistics.median(
            t / b for t, b in zip(res.step_seconds[1:], res.step_batch_sizes[1:], strict=True) if b > 0
        ),
        "realised_batch_sizes": list(res.step_batch_sizes),
        "first_step_seconds": res.step_seconds[0],
        "peak_rss_mb": peak,
        "peak_rss_above_loaded_mb": peak - before,
        "trainable_parameters": res.trainable_parameters,
        "frozen": len(res.frozen),
        "untied": list(res.untied),
        "converted": len(res.converted),
    }


MODES = ["nonprivate-full", "dp-ghost-full", "nonprivate-lora", "dp-ghost-lora"]


def part_overhead(args: argparse.Namespace) -> None:
    rows = []
    for model, steps in (("gpt", args.gpt_overhead_steps), ("smollm2", args.smollm2_overhead_steps)):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--worker", f"{model}:{mode}:{steps}"]
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
            if out.returncode:
                print(out.stderr[-2000:], flush=True)
                rows.append({"model": model, "mode": mode, "error": out.stderr[-500:]})
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(row, flush=True)
    for model in ("gpt", "smollm2"):
        base = next(
            (r for r in rows if r["model"] == model and r["mode"] == "nonprivate-full" and "error" not in r), None
        )
        for r in rows:
            if r["model"] == model and base is not None and "error" not in r:
                r["time_ratio"] = r["seconds_per_step"] / base["seconds_per_step"]
                r["time_ratio_per_window"] = r["seconds_per_expected_batch"] / base["seconds_per_expected_batch"]
                r["memory_ratio"] = r["peak_rss_mb"] / base["peak_rss_mb"]
    write(
        "overhead",
        {
            "rows": rows,
            "method": "one subprocess per (model, mode); seconds per step = median over "
            "steps after the first (forward, backward, clipping, noise, optimizer step; batch sampling "
            "excluded); peak RSS from getrusage; DP batches are Poisson "
            "with the same expected size",
        },
    )


SMOLLM2_RUNS = ("nonprivate", "dp-lora", "dp-full", "dp-full-secret")


def part_smollm2(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from privlab.llm.config import DPSpec, smollm2_canary_config
    from privlab.llm.experiment import run_canary_experiment, with_dp

    base = smollm2_canary_config(args.smollm2_steps, reference=args.smollm2_reference, seed=args.seed)
    dp = DPSpec(target_epsilon=8.0)
    configs = {
        "nonprivate": ("non-private", base),
        "dp-lora": ("DP-LoRA eps=8", replace(with_dp(base, dp), train=replace(base.train, lora_r=8, lr=1e-3, dp=dp))),
        "dp-full": ("DP full eps=8", replace(with_dp(base, dp), train=replace(base.train, lr=1e-4, dp=dp))),
        "dp-full-secret": ("DP full eps=8 per secret", with_dp(base, replace(dp, privacy_unit="secret"))),
    }
    results = {}
    for key in args.smollm2_runs.split(","):
        if key not in configs:
            raise SystemExit(f"--smollm2-runs: {key!r} is not one of {', '.join(SMOLLM2_RUNS)}")
        label, cfg = configs[key]
        t = time.perf_counter()
        r = run_canary_experiment(cfg)
        r.pop("membership", None)
        for a in r["mia"].values():
            a.pop("scores", None)
        results[label] = r
        cal = {k: round(v["mean"], 2) for k, v in r.get("exposure_reference", {}).get("curve", {}).items()}
        print(
            label,
            f"{time.perf_counter() - t:.0f} s",
            {k: round(v["mean"], 2) for k, v in r["exposure"]["curve"].items()},
            "calibrated",
            cal,
            {n: round(a["metrics"]["auc"], 3) for n, a in r["mia"].items()},
            flush=True,
        )
    write(args.smollm2_out, {"results": results})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="canaries,shift,overhead")
    p.add_argument("--steps", type=int, default=1200, help="non-private small-GPT steps")
    p.add_argument("--dp-steps", type=int, default=400)
    p.add_argument("--dp-batch", type=int, default=128)
    p.add_argument("--epsilons", type=float, nargs="+", default=[8.0, 2.0])
    p.add_argument("--gpt-overhead-steps", type=int, default=20)
    p.add_argument("--smollm2-overhead-steps", type=int, default=4)
    p.add_argument("--smollm2-steps", type=int, default=60)
    p.add_argument("--smollm2-runs", default=",".join(SMOLLM2_RUNS[:3]), help="smollm2 part: runs to do")
    p.add_argument("--smollm2-reference", default="base", help="smollm2 part: none, base or public")
    p.add_argument("--smollm2-out", default="smollm2", help="smollm2 part: results/<name>.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unit-kinds", default="example,secret", help="units part: privacy units to compare")
    p.add_argument("--unit-seeds", type=int, nargs="*", default=None, help="units part: seeds (default --seed)")
    p.add_argument("--unit-delta", type=float, default=None, help="units part: delta (default 1/(10 N))")
    p.add_argument("--units-out", default="units", help="units part: results/<name>.json")
    p.add_argument("--unit-per-unit", default="one", choices=["one", "all"], help="units part: windows per unit")
    p.add_argument("--worker", default="")
    args = p.parse_args()
    if args.worker:
        model, mode, steps = args.worker.split(":")
        print(json.dumps(overhead_worker(model, mode, int(steps))))
        return
    parts = {
        "canaries": part_canaries,
        "shift": part_shift,
        "overhead": part_overhead,
        "smollm2": part_smollm2,
        "units": part_units,
    }
    for name in args.parts.split(","):
        parts[name](args)


if __name__ == "__main__":
    main()
