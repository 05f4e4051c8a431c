"""Unlearning benchmark: every privlab.unlearn method on MNIST and Adult, forget sets of 1%, 5% and
10% drawn at random and 10% drawn from one class, each scored on the six criteria against the
model retrained without the forget set (memorisation, PrivLeak, U-LiRA, utility, cost, and -- on
the 5% random set -- 10 removal requests in a row; scaling is read across the 1/5/10% sets).

Writes ``results/<dataset>.json`` (machine, config, per forget set and method the criteria with
bootstrap intervals; the U-LiRA positive control on the original models) as each dataset
finishes. Run from the repository root (about 20 minutes on a shared 2-core machine):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/unlearning/run.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/unlearning/run.py --quick    # smoke run, ~2 min

The anchor is retraining from scratch, measured in the same run on the same data (``time_ratio``
is the removal's wall time over the retraining's).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from privlab._json import jsonable
from privlab.data import ArrayDataset, load_dataset
from privlab.report.environment import environment
from privlab.train import TrainConfig
from privlab.unlearn import UnlearnConfig
from privlab.unlearn.evaluation import choose_forget
from privlab.unlearn.run import DEFAULT_METHODS, UnlearnRunConfig, evaluate_method, factory_for
from privlab.unlearn.ulira import ULiRAConfig, ulira

HERE = Path(__file__).resolve().parent
FORGET_SETS = (
    ("random_1pct", 0.01, "random"),
    ("random_5pct", 0.05, "random"),
    ("random_10pct", 0.1, "random"),
    ("class_10pct", 0.1, "class"),
)
# One setting per method for both datasets (no per-dataset tuning); lr/epochs of the approximate methods.
PER_METHOD: dict[str, dict[str, Any]] = {
    "finetune": {"epochs": 3, "lr": 0.05},
    "gradient_ascent": {"epochs": 2, "lr": 0.01},
    "neggrad_plus": {"epochs": 2, "lr": 0.05, "alpha": 0.9},
    "scrub": {"epochs": 3, "max_epochs": 1, "lr": 0.02},
    "salun": {"epochs": 3, "lr": 0.02},
}
DATASETS = {  # training rows, test rows, hidden widths, training epochs (chosen to overfit: leakage to remove)
    "mnist": (2000, 1000, (128,), 20),
    "adult": (2000, 1000, (256,), 40),
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="mnist,adult")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--shadows", type=int, default=8, help="U-LiRA shadow models per method and forget set")
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small smoke configuration")
    p.add_argument("--out", default=str(HERE / "results"))
    return p.parse_args()


def data_for(name: str, n: int, n_test: int, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    train, test = load_dataset(name, "train"), load_dataset(name, "test")
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return train.subset(idx), test.head(n_test)


def run_dataset(name: str, a: argparse.Namespace) -> dict[str, Any]:
    n, n_test, hidden, epochs = DATASETS[name]
    if a.quick:
        n, n_test, epochs = 600, 500, max(5, epochs // 4)
    train, test = data_for(name, n, n_test, a.seed)
    methods = tuple(a.methods.split(","))
    settings = UnlearnConfig(
        train=TrainConfig(epochs=epochs, batch_size=32, lr=0.05),
        batch_size=32,
        shards=4,
        slices=2,
        l2=0.01,
        sigma=0.3,
        epsilon=10.0,
        delta=1e-4,
    )
    base = UnlearnRunConfig(
        methods=methods,
        scaling=(),
        requests=0,
        shadows=a.shadows,
        hidden=hidden,
        settings=settings,
        per_method={m: o for m, o in PER_METHOD.items() if m in methods},
    )
    out: dict[str, Any] = {
        "dataset": name,
        "n_train": n,
        "n_test": n_test,
        "hidden": list(hidden),
        "config": base.to_dict(),
        "machine": environment(),
        "forget_sets": {},
        "sequence": {},
    }
    start = time.perf_counter()
    for fs_name, frac, kind in FORGET_SETS:
        cls = 1 if name == "adult" else 0  # Adult's minority class (>50K) is 24% of rows, so 10% fits in it
        ucfg = replace(base, forget_fraction=frac, forget_kind=kind, forget_class=cls)
        res: dict[str, Any] = {}
        idx = choose_forget(train, frac, kind, a.seed, cls)
        t = time.perf_counter()
        res["original"] = ulira(
            None,
            factory_for("finetune", train, hidden),
            train,
            idx,
            ucfg.config_for("finetune"),
            ULiRAConfig(a.shadows, seed=a.seed),
        ).to_dict()
        for m in methods:
            t = time.perf_counter()
            res[m] = evaluate_method(ucfg, m, train, test, a.seed, progress=False)["main"]
            u = res[m]["leakage"]["ulira"]
            print(
                f"[{name} {fs_name}] {m:16s} forget acc {res[m]['memorisation']['forget_accuracy']:.3f} "
                f"(retrain {res[m]['memorisation']['forget_accuracy_retrain']:.3f}) PrivLeak "
                f"{res[m]['leakage']['privleak']:+.3f} U-LiRA TPR@1% {u['tpr_at_fpr']['0.01']:.3f} "
                f"@5% {u['tpr_at_fpr']['0.05']:.3f} AUC {u['auc']:.3f} test {res[m]['utility']['test_accuracy']:.3f} "
                f"time/retrain {res[m]['cost']['time_ratio']:.3f} frac {res[m]['cost']['fraction_retrained']:.2f} "
                f"({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
        out["forget_sets"][fs_name] = {"fraction": frac, "kind": kind, "n_forget": len(idx), "results": res}
    seq_cfg = replace(base, forget_fraction=0.05, requests=a.requests, shadows=0)
    for m in methods:
        t = time.perf_counter()
        out["sequence"][m] = evaluate_method(seq_cfg, m, train, test, a.seed, progress=False)["sequence"]
        s = out["sequence"][m]
        print(
            f"[{name} sequence] {m:16s} test acc {s[0]['test_accuracy']:.3f} -> {s[-1]['test_accuracy']:.3f}, "
            f"PrivLeak {s[0]['privleak']:+.3f} -> {s[-1]['privleak']:+.3f} ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    out["seconds"] = time.perf_counter() - start
    return out


def main() -> None:
    a = parse()
    torch.set_num_threads(1)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    for name in a.datasets.split(","):
        res = run_dataset(name, a)
        path = Path(a.out) / f"{name}{'-quick' if a.quick else ''}.json"
        path.write_text(json.dumps(jsonable(res), indent=1))
        print(f"wrote {path} ({res['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
