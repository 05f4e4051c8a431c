"""Membership-inference benchmark: a target + 64 reference MLPs on Fashion-MNIST, all attacks.

Writes ``results/mia.json`` (machine, config, timings, metrics with bootstrap intervals, target checks)
and ``results/roc.png`` / ``.svg``. Run from the repository root:

    .venv/bin/python benchmarks/mia/run.py            # full run (~15 min on 2 cores)
    .venv/bin/python benchmarks/mia/run.py --quick    # smoke run (~1 min)

Timing compares the vectorised ensemble with the same models trained one after another (the plain
``torch.optim`` loop), both measured in this run on the same models; the ratio is what is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from privlab.attacks import MIAResult, PopulationSignals, compute_signals, evaluate_scores, plot_roc, run_attacks
from privlab.data import ArrayDataset, load_dataset, membership_mask
from privlab.models import MLP
from privlab.report.environment import cpu_model
from privlab.train import EnsembleResult, TrainConfig, ensemble, stacked_mlp, train_ensemble, train_model, vmapped
from privlab.train.sampling import num_steps

HERE = Path(__file__).resolve().parent


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--n", type=int, default=20000, help="population size (50%% membership per model)")
    p.add_argument("--n-population", type=int, default=5000, help="extra z points for RMIA (in no training set)")
    p.add_argument("--n-ref", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=float, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--n-targets", type=int, default=4, help="models 0..n-1 attacked in turn (leave-one-out refs)")
    p.add_argument("--timing-models", type=int, default=16)
    p.add_argument("--timing-epochs", type=float, default=None, help="epochs of the timed runs (default: --epochs)")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the untimed training")
    p.add_argument("--timing-threads", default="1,2", help="torch thread counts tried for each timed path")
    p.add_argument(
        "--timing-paths",
        default="ensemble,one_by_one",
        help="timed paths: ensemble and one_by_one always, any other key of PATHS on request",
    )
    p.add_argument("--repeats", type=int, default=2, help="timed repetitions of each path (fastest kept)")
    p.add_argument("--sweep-hidden", default="8,16,32,64", help="widths for the speed sweep (16 models, 200 steps)")
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=os.environ.get("PRIVLAB_MIA_CACHE", str(HERE / ".cache")))
    p.add_argument("--out", default=str(HERE / "results" / "mia.json"))
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration")
    p.add_argument(
        "--timing-only",
        action="store_true",
        help="only the timed comparison (no sweep, no full ensemble, no attacks); JSON to --out",
    )
    a = p.parse_args()
    if a.quick:
        a.n, a.n_population, a.n_ref, a.epochs, a.timing_models, a.bootstrap = 2000, 1000, 8, 5, 4, 50
        a.sweep_hidden, a.timing_epochs, a.n_targets = "16", 1, 2
    if a.timing_epochs is None:
        a.timing_epochs = a.epochs
    a.threads_list = [int(t) for t in a.timing_threads.split(",") if t]
    extra = [t for t in a.timing_paths.split(",") if t and t not in ("ensemble", "one_by_one")]
    a.paths_list = ["ensemble", "one_by_one", *extra]
    unknown = [t for t in a.paths_list if t not in PATHS]
    if unknown:
        p.error(f"--timing-paths: unknown {unknown}; expected some of {list(PATHS)}")
    return a


def _clock() -> tuple[float, float]:
    """Wall time and CPU time, the CPU time including reaped worker processes (backend processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time() + children.ru_utime + children.ru_stime


PATHS = {  # label -> train_ensemble arguments
    "ensemble": {"backend": "local"},
    "one_by_one": {"backend": "loop"},
    "ensemble_vmap": {"backend": "local", "kernel": "vmap"},
    "ensemble_one_chunk": {"backend": "local", "chunk_size": 1 << 30},  # all models in one chunk
    "ensemble_chunks_of_10": {"backend": "local", "chunk_size": 10},  # 2 MiB chunks (default: 4 MiB)
    "ensemble_processes": {"backend": "processes"},  # one worker process of one thread per CPU
    "one_by_one_processes": {"backend": "processes", "train_fn": train_model},  # the loop, spread over workers
    "ensemble_vmap_processes": {"backend": "processes", "kernel": "vmap"},
    "ensemble_contiguous_weights": {"backend": "local"},  # weights kept (K, out, in): see _train
}


def _train(label: str, *args: Any, **kwargs: Any) -> EnsembleResult:
    """``train_ensemble`` along path ``label``; ``ensemble_contiguous_weights`` switches off the stacked-MLP
    kernel's (K, in, out) weight layout (the anchor for that change), everything else as ``ensemble``."""
    if label != "ensemble_contiguous_weights":
        return train_ensemble(*args, **kwargs, **PATHS[label])
    original = vmapped.transposed_layout
    vmapped.transposed_layout = lambda plan, params: params  # type: ignore[assignment]
    try:
        return train_ensemble(*args, **kwargs, **PATHS[label])
    finally:
        vmapped.transposed_layout = original


def time_paths(
    factory: Callable[[], torch.nn.Module],
    data: ArrayDataset,
    rows: np.ndarray,
    cfg: TrainConfig,
    repeats: int,
    threads: list[int],
    labels: list[str],
) -> tuple[dict[str, EnsembleResult], dict[str, Any]]:
    """Train ``rows`` along each path of ``labels`` at each torch thread count, alternating paths,
    ``repeats`` times; keep each (path, threads) pair's fastest wall time (the least disturbed run).

    Every path is warmed up first. ``speedup`` compares each path's best thread count (what a user
    would pick) with the one-by-one loop's best; ``speedup_same_threads`` compares at equal counts.
    """
    warm = TrainConfig(**{**cfg.to_dict(), "epochs": 0.02, "adam_betas": cfg.adam_betas})
    before = torch.get_num_threads()
    out: dict[str, EnsembleResult] = {}  # label or "label@threads" -> the models of its last run
    wall: dict[str, dict[int, float]] = {label: {} for label in labels}
    cpu: dict[str, dict[int, float]] = {label: {} for label in labels}
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for label in labels:
            _train(label, factory, data, rows[:2], warm, progress=False)
        for _ in range(repeats):
            for label in labels:
                w0, c0 = _clock()
                out[label] = out[f"{label}@{n_threads}"] = _train(label, factory, data, rows, cfg, progress=False)
                w1, c1 = _clock()
                wall[label][n_threads] = min(wall[label].get(n_threads, np.inf), w1 - w0)
                cpu[label][n_threads] = min(cpu[label].get(n_threads, np.inf), c1 - c0)
    torch.set_num_threads(before)
    best = {label: min(w.values()) for label, w in wall.items()}
    times: dict[str, Any] = {
        "wall_s": {label: {str(t): v for t, v in w.items()} for label, w in wall.items()},
        "cpu_s": {label: {str(t): v for t, v in c.items()} for label, c in cpu.items()},
        "best_wall_s": best,
        "best_threads": {label: min(w, key=w.__getitem__) for label, w in wall.items()},
        "speedup": {label: best["one_by_one"] / best[label] for label in labels if label != "one_by_one"},
        "speedup_same_threads": {
            label: {str(t): wall["one_by_one"][t] / wall[label][t] for t in threads}
            for label in labels
            if label != "one_by_one"
        },
    }
    return out, times


def products_ceiling(
    factory: Callable[[], torch.nn.Module],
    data: ArrayDataset,
    rows: np.ndarray,
    cfg: TrainConfig,
    repeats: int,
    threads: list[int],
) -> dict[str, Any]:
    """Wall time of the work no ensemble trainer can skip, for the same chunks and step counts as
    ``train_ensemble`` at each thread count (fastest of ``repeats``), in two parts:

    * ``products``: per step and chunk of K models, each layer's forward ``bmm`` (K, B, in) x
      (K, in, out), weight gradient ``baddbmm_`` (K, in, B) x (K, B, out) with the momentum folded
      in, and above the first layer the input gradient ``bmm`` (K, B, out) x (K, out, in), in the
      stacked-MLP kernel's layouts and orientations (a layer with fewer than
      ``stacked_mlp.NARROW`` outputs as ``W a^T`` and ``dz^T a``), on random values;
    * ``products_gather_update``: the same plus gathering each model's batch rows from the data
      (``index_select``) and the parameter update ``p -= lr b`` (``torch._foreach_add_``).

    The tensors are built before the clock starts, so the floor holds no allocation or random draws.

    No softmax, activation or bias work. One-by-one time over either time bounds the speed-up any
    kernel built on these operators can reach on this machine.
    """
    probe = factory()
    plan = stacked_mlp.mlp_plan(probe)
    assert plan is not None, "the MIA benchmark's MLP fits the stacked-MLP kernel"
    shapes = [tuple(probe.get_parameter(layer.weight).shape) for layer in plan]  # (out, in)
    n_bytes = sum(p.numel() * p.element_size() for p in probe.parameters())
    size = max(1, min(len(rows), ensemble.CHUNK_BYTES // n_bytes))
    steps = [num_steps(int(r.sum()), cfg.epochs, cfg.batch_size) for r in rows]
    chunks = [(min(size, len(rows) - s), max(steps[s : s + size])) for s in range(0, len(rows), size)]
    B = cfg.batch_size
    x_flat = data.x.reshape(len(data), -1).contiguous()
    gen = torch.Generator().manual_seed(0)

    narrow = [stacked_mlp.is_narrow(o) for o, _ in shapes]  # run as z^T = W a^T, weights (K, out, in)
    kinds = list(zip(shapes, narrow, strict=True))

    def make_chunk(k: int, n_steps: int) -> dict[str, Any]:
        """One chunk's tensors (random values, the kernel's layouts), built outside the timed region."""

        def rand(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen)

        return {
            "acts": [rand(k, B, shapes[0][1])] + [rand(k, B, o) for o, _ in shapes[:-1]],
            "w": [rand(k, o, i) if n else rand(k, i, o) for (o, i), n in kinds],
            "dz": [rand(k, o, B) if n else rand(k, B, o) for (o, _), n in kinds],
            "gw": [torch.zeros(k, o, i) if n else torch.zeros(k, i, o) for (o, i), n in kinds],
            "z": [torch.empty(k, o, B) if n else torch.empty(k, B, o) for (o, _), n in kinds],
            "da": [torch.empty(k, B, i) for _, i in shapes],
            "idx": torch.randint(0, len(x_flat), (n_steps, k * B), generator=gen),
        }

    def run_chunk(c: dict[str, Any], memory: bool) -> None:
        acts, w, dz, gw, idx = c["acts"], c["w"], c["dz"], c["gw"], c["idx"]
        for t in range(len(idx)):
            if memory:
                torch.index_select(x_flat, 0, idx[t], out=acts[0].view(len(idx[t]), -1))
            for l in range(len(shapes)):
                if narrow[l]:
                    torch.bmm(w[l], acts[l].transpose(1, 2), out=c["z"][l])
                else:
                    torch.bmm(acts[l], w[l], out=c["z"][l])
            for l in range(len(shapes) - 1, -1, -1):
                if narrow[l]:
                    gw[l].baddbmm_(dz[l], acts[l], beta=cfg.momentum)
                else:
                    gw[l].baddbmm_(acts[l].transpose(1, 2), dz[l], beta=cfg.momentum)
                if l:
                    d = dz[l].transpose(1, 2) if narrow[l] else dz[l]  # (K, B, out)
                    torch.bmm(d, w[l] if narrow[l] else w[l].transpose(1, 2), out=c["da"][l])
            if memory:
                torch._foreach_add_(w, gw, alpha=-cfg.lr)

    prepared = [make_chunk(k, n_steps) for k, n_steps in chunks]
    before = torch.get_num_threads()
    wall: dict[str, dict[str, float]] = {"products": {}, "products_gather_update": {}}
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for part, times in wall.items():
            memory = part != "products"
            run_chunk(make_chunk(min(size, len(rows)), 2), memory)  # warm-up
            for _ in range(repeats):
                w0, _ = _clock()
                for c in prepared:
                    run_chunk(c, memory)
                times[str(n_threads)] = min(times.get(str(n_threads), np.inf), _clock()[0] - w0)
    torch.set_num_threads(before)
    flop = sum(2 * B * o * i * (3 if l else 2) for l, (o, i) in enumerate(shapes)) * sum(steps)
    best = {part: min(t.values()) for part, t in wall.items()}
    return {
        "wall_s": wall,
        "best_wall_s": best,
        "products_flop": flop,
        "products_gflop_per_s": flop / best["products"] / 1e9,
        "chunks": chunks,
    }


def speed_sweep(data: ArrayDataset, mask: np.ndarray, a: argparse.Namespace, widths: list[int]) -> list[dict]:
    """Both ensemble kernels vs one-by-one for 16 models of each width, 200 steps each."""
    rows = []
    K = min(16, mask.shape[0])
    n_in = int(mask[:K].sum(1).min())
    cfg = TrainConfig(epochs=200 * a.batch_size / n_in, batch_size=a.batch_size, lr=a.lr, seed=a.seed)
    for h in widths:

        def factory(h: int = h) -> MLP:
            return MLP(hidden=(h,))

        paths = ["ensemble", "one_by_one", "ensemble_vmap"]
        _, times = time_paths(factory, data, mask[:K], cfg, a.repeats, a.threads_list, paths)
        rows.append({"hidden": h, "n_models": K, **times})
        sp = times["speedup"]
        print(
            f"sweep MLP(784-{h}-10) x{K}: speed-up {sp['ensemble']:.2f}x (mlp kernel), "
            f"{sp['ensemble_vmap']:.2f}x (vmap kernel)",
            flush=True,
        )
    return rows


def write_json(a: argparse.Namespace, body: dict[str, Any]) -> None:
    """``a.out`` <- schema, command, machine and configuration, then ``body`` (its "config": the training config)."""
    out = {
        "schema": "privlab.benchmarks.mia",
        "version": 2,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_at_end": os.getloadavg(),
        },
        "config": {
            **{k: v for k, v in vars(a).items() if k not in ("out", "cache_dir")},
            "train": body["config"],
            "model": f"MLP(784-{a.hidden}-10)",
        },
        **{k: v for k, v in body.items() if k != "config"},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=float, allow_nan=False))


def main() -> None:
    a = parse()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    full = load_dataset(a.dataset, split="train")
    order = torch.from_numpy(np.random.default_rng(a.seed).permutation(len(full)))
    data = full.subset(order[: a.n])
    population = full.subset(order[a.n : a.n + a.n_population])
    K = a.n_ref + 1
    mask = membership_mask(K, a.n, seed=a.seed)  # row 0: target; rows 1..: references
    cfg = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, momentum=0.9, seed=a.seed)

    def factory() -> MLP:
        return MLP(hidden=(a.hidden,))

    # 1. Timing: the same models along each path, no cache.
    T = a.timing_models
    tcfg = TrainConfig(**{**cfg.to_dict(), "epochs": a.timing_epochs, "adam_betas": cfg.adam_betas})
    load_before = os.getloadavg()
    trained, times = time_paths(factory, data, mask[:T], tcfg, a.repeats, a.threads_list, a.paths_list)
    vec, loop = trained["ensemble"], trained["one_by_one"]
    t_vec, t_loop = times["best_wall_s"]["ensemble"], times["best_wall_s"]["one_by_one"]

    def model_diffs(u: EnsembleResult, v: EnsembleResult) -> list[float]:
        return [max(float((u.state[k][i] - v.state[k][i]).abs().max()) for k in u.state) for i in range(T)]

    diffs = model_diffs(vec, loop)
    max_diff = max(diffs)
    # Control: the plain loop against itself at another thread count (another float summation order).
    loop_threads = sorted(k for k in trained if k.startswith("one_by_one@"))
    diffs_loop = model_diffs(trained[loop_threads[0]], trained[loop_threads[-1]]) if len(loop_threads) > 1 else []
    print(
        f"timing {T} models: ensemble {t_vec:.1f}s ({times['best_threads']['ensemble']} threads), one-by-one "
        f"{t_loop:.1f}s ({times['best_threads']['one_by_one']} threads), ratio {t_loop / t_vec:.2f}x; "
        f"same threads {times['speedup_same_threads']['ensemble']}; max |param diff| per model "
        f"{[f'{d:.0e}' for d in diffs]}; one-by-one at {loop_threads} threads against itself "
        f"{[f'{d:.0e}' for d in diffs_loop]}",
        flush=True,
    )

    ceiling = products_ceiling(factory, data, mask[:T], tcfg, a.repeats, a.threads_list)
    ceiling["speedup_bound"] = {part: t_loop / t for part, t in ceiling["best_wall_s"].items()}
    print(
        f"products alone {ceiling['best_wall_s']['products']:.2f}s ({ceiling['products_gflop_per_s']:.0f} GFLOP/s), "
        f"with batch gather and update {ceiling['best_wall_s']['products_gather_update']:.2f}s: speed-up bounds "
        f"{ceiling['speedup_bound']}",
        flush=True,
    )
    timing = {
        "n_models_timed": T,
        "epochs_timed": a.timing_epochs,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "ensemble_s": t_vec,
        "one_by_one_s": t_loop,
        "speedup": t_loop / t_vec,
        **times,
        "products_only": ceiling,
        "max_abs_param_diff": max_diff,
        "max_abs_param_diff_per_model": diffs,
        "one_by_one_vs_itself_other_threads_per_model": diffs_loop,
        "repeats": a.repeats,
    }
    if a.timing_only:
        write_json(a, {"config": cfg.to_dict(), "timing": timing})
        return

    sweep = speed_sweep(data, mask, a, [int(h) for h in a.sweep_hidden.split(",") if h])

    # 2. All K models (cached: a re-run reuses them, a killed run resumes).
    t0 = time.perf_counter()
    ens = train_ensemble(factory, data, mask, cfg, cache_dir=a.cache_dir, progress=True)
    t_full = time.perf_counter() - t0
    sig, psig = compute_signals(ens, data), compute_signals(ens, population)
    train_acc = float((sig.logits[0].argmax(-1) == sig.labels)[mask[0]].mean())
    test_acc = float((psig.logits[0].argmax(-1) == psig.labels).mean())
    print(
        f"ensemble of {K}: {t_full:.1f}s (cached chunks reused if any); target train acc {train_acc:.3f}, "
        f"held-out acc {test_acc:.3f}",
        flush=True,
    )

    def attack(target: int, n_refs: int | None, names: list[str]) -> MIAResult:
        others = [j for j in range(K) if j != target]  # leave-one-out: every other model is a reference
        refs = others if n_refs is None else others[:n_refs]
        return run_attacks(
            sig.select([target]),
            mask[target],
            sig.select(refs),
            mask[refs],
            attacks=names,
            population_signals=PopulationSignals(psig.select([target]), psig.select(refs)),
            seed=a.seed,
            n_bootstrap=0,
        )

    def pooled(results: list[MIAResult]) -> MIAResult:
        """All (target, example) pairs together, as Carlini et al. 2022 evaluate; bootstrap over pairs."""
        membership = np.concatenate([r.membership for r in results])
        scores = {n: np.concatenate([r.scores[n] for r in results]) for n in results[0].scores}
        metrics = {n: evaluate_scores(v, membership, n_bootstrap=a.bootstrap, seed=a.seed) for n, v in scores.items()}
        config = {**results[0].config, "n_targets": len(results), "per_target": [r.config["attacks"] for r in results]}
        return MIAResult(metrics=metrics, scores=scores, membership=membership, config=config)

    main_names = [
        "loss",
        "attack_r",
        "lira_online",
        "lira_offline",
        "lira_online_global",
        "lira_online_per_example",
        "lira_offline_global",
        "lira_offline_per_example",
        "rmia_offline",
        "rmia_online",
    ]
    targets = range(a.n_targets)
    big = pooled([attack(t, None, main_names) for t in targets])
    small = pooled([attack(t, 2, ["lira_online", "rmia_offline", "rmia_online"]) for t in targets])
    print(big.table())
    print("with 2 reference models:")
    print(small.table(), flush=True)

    rows = {}
    for tag, res in ((f"{a.n_ref}ref", big), ("2ref", small)):
        for name, m in res.metrics.items():
            rows[f"{name}@{tag}"] = {
                "auc": m.auc,
                "auc_ci": m.auc_ci,
                "balanced_accuracy": m.balanced_accuracy,
                "tpr@1%fpr": m.tpr_at_fpr[0.01],
                "tpr@1%fpr_ci": m.tpr_at_fpr_ci[0.01],
                "tpr@0.1%fpr": m.tpr_at_fpr[0.001],
                "tpr@0.1%fpr_ci": m.tpr_at_fpr_ci[0.001],
                "config_per_target": [c[name] for c in res.config["per_target"]],
            }
    tag = f"{a.n_ref}ref"
    lira, loss = rows[f"lira_online@{tag}"]["tpr@0.1%fpr"], rows[f"loss@{tag}"]["tpr@0.1%fpr"]
    checks = {
        "loss_tpr@0.1%": loss,
        "lira_online_tpr@0.1%": lira,
        "lira_online_tpr@0.1%_over_loss": lira / loss if loss > 0 else None,  # None: LOSS found no member
        "lira_online_tpr@0.1%_at_least_5x_loss": bool(lira >= 5 * loss and lira > 0),
        "rmia_offline@2ref_auc_minus_lira_online@64ref_auc": rows["rmia_offline@2ref"]["auc"]
        - rows[f"lira_online@{tag}"]["auc"],
        "rmia_offline@2ref_tpr@0.1%_over_lira_online@64ref": rows["rmia_offline@2ref"]["tpr@0.1%fpr"] / lira
        if lira
        else None,
        "ensemble_speedup_same_models": t_loop / t_vec,
        "ensemble_at_least_4x": bool(t_loop / t_vec >= 4),
    }
    out = {
        "models": {"target_train_acc": train_acc, "target_heldout_acc": test_acc},
        "timing": {
            **timing,
            "sweep": sweep,
            "full_ensemble_s": t_full,
            "full_ensemble_models": K,
        },
        "attacks": rows,
        "checks": checks,
    }
    write_json(a, {"config": cfg.to_dict(), **out})
    big.to_json(Path(a.out).with_name(Path(a.out).stem + "_scores.json"))
    plot_roc(
        big,
        Path(a.out).with_name("roc.png"),
        title=f"{a.dataset}, MLP, {a.n_ref} reference models, {a.n_targets} targets",
    )
    print(json.dumps(checks, indent=1))


if __name__ == "__main__":
    main()
