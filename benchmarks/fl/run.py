"""Federated-learning benchmark on Flower's simulation engine (Ray), 2-CPU machine.

Writes benchmarks/fl/results/*.json:

* accuracy.json      centralised training vs FedAvg (100 clients, 10 per round) vs DP-FedAvg at several z,
                     with the user-level epsilon of each (privlab.accounting);
* inversion.json     gradient-inversion quality (PSNR, SSIM, recognisability) by defence and method;
* round_time.json    seconds per round in simulation for 10, 100 and 1,000 clients;
* subject_mia.json   subject-level membership inference (Suri et al. 2022) on the final global model,
                     without DP and under user-level DP-FedAvg, with the epsilon of each.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fl/run.py            # full (about 25 min)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fl/run.py --quick    # a few minutes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from privlab.data import load_mnist
from privlab.fl import FedConfig, UserDPConfig, run_federated
from privlab.fl.client import build_fl_model
from privlab.fl.inversion import InversionConfig
from privlab.fl.leakage import DEFENCES, inversion_experiment
from privlab.fl.server import evaluate
from privlab.train import TrainConfig, train_model

OUT = Path(__file__).parent / "results"


def machine() -> dict:
    import flwr
    import ray

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "flwr": flwr.__version__, "ray": ray.__version__}


def write(name: str, body: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_text(json.dumps({"machine": machine(), **body}, indent=2) + "\n")
    print(f"wrote {OUT / name}")


def accuracy(rounds: int, dp_rounds: int, train_size: int) -> None:
    # McMahan et al. 2017's MNIST setting: IID, C = 0.1, E = 5, B = 10
    base = FedConfig(num_clients=100, clients_per_round=10, rounds=rounds, local_epochs=5.0, batch_size=10,
                     lr=0.05, train_size=train_size, hidden=(128,))
    # centralised: the same model on all the same data, plain SGD (momentum 0.9), 10 epochs
    cen = build_fl_model(base)
    data = load_mnist("train").head(train_size)
    epochs = 10.0
    t0 = time.perf_counter()
    train_model(cen, data, TrainConfig(epochs=epochs, batch_size=64, lr=0.05, momentum=0.9))
    cen_acc, _ = evaluate(cen, load_mnist("test"))
    rows = [{"setting": "centralised", "accuracy": cen_acc, "epsilon": None, "seconds": time.perf_counter() - t0}]
    # central DP samples clients by Poisson at q = m / N (the mechanism its epsilon bounds); the last row
    # samples exactly m (Flower's sampling), whose epsilon is the fixed-size replace-one bound
    settings = [("FedAvg", None, "auto")] + [
        (f"DP-FedAvg z={z}", UserDPConfig(noise_multiplier=z, clip_norm=0.5), "auto") for z in (0.3, 1.0)
    ] + [("DP-FedAvg z=1.0, exactly m", UserDPConfig(noise_multiplier=1.0, clip_norm=0.5), "fixed")]
    for name, dp, sampling in settings:
        # DP runs are shorter: the point is accuracy vs epsilon, and each round costs ~13 s here
        cfg = replace(base, dp=dp, rounds=base.rounds if dp is None else dp_rounds, client_sampling=sampling)
        res = run_federated(cfg, progress=True)
        rows.append({"setting": name, "client_sampling": cfg.sampling, "accuracy": res.accuracy,
                     "epsilon": res.epsilon, "seconds": res.seconds,
                     "curve": [[r.round, r.accuracy, r.epsilon] for r in res.rounds]})
        print(name, res.accuracy, res.epsilon)
        write("accuracy.json", {"config": base.to_dict(), "centralised_epochs": epochs, "rows": rows, "partial": True})
    write("accuracy.json", {"config": base.to_dict(), "centralised_epochs": epochs, "rows": rows,
                            "gap_fedavg_vs_centralised_points": 100 * (cen_acc - rows[1]["accuracy"])})


def inversion(targets: int) -> None:
    """DLG and IG against the MLP and the CNN (random init), batch of 1, by defence."""
    train, test = load_mnist("train"), load_mnist("test")
    torch.manual_seed(0)
    clf = build_fl_model(FedConfig(hidden=(128,)))
    train_model(clf, train.head(5000), TrainConfig(epochs=2, batch_size=64, lr=0.1))
    rows = []
    archs = (("MLP 784-128-10", FedConfig(hidden=(128,))), ("SmallCNN", FedConfig(model="cnn")))
    for arch, arch_cfg in archs:
        model = build_fl_model(arch_cfg, seed=1)
        # the CNN's gradient is not a scaled copy of the input: IG gets more steps there
        runs = (("dlg", 100, 1.0), ("ig", 200 if arch_cfg.model == "mlp" else 600, 0.1))
        for method, steps, lr in runs:
            for d in DEFENCES:
                t0 = time.perf_counter()
                r = inversion_experiment(model, test.head(max(targets, 10)), clf, defence=d, num_targets=targets,
                                         cfg=InversionConfig(method=method, steps=steps, lr=lr), noise_multiplier=1.0,
                                         clip_norm=1.0, secagg_clients=10,
                                         mean_image=train.x[:5000].mean(0, keepdim=True))
                rows.append({"model": arch, "steps": steps, **r.to_dict(), "seconds": time.perf_counter() - t0})
                print(arch, method, d, r.median_psnr, r.recognisability)
    write("inversion.json", {"models": [a for a, _ in archs], "init": "random (seed 1)", "targets": targets,
                             "defence_params": {"dp": "clip 1.0, z 1.0, m 10 (distributed noise)",
                                                "secagg": "sum of 10 clients"}, "rows": rows})


def round_time(rounds: int) -> None:
    rows = []
    for n in (10, 100, 1000):
        cfg = FedConfig(num_clients=n, clients_per_round=10, rounds=rounds, train_size=max(20 * n, 1000),
                        eval_size=1000, hidden=(128,))
        res = run_federated(cfg)
        steady = [r.seconds for r in res.rounds[1:]] or [res.rounds[0].seconds]
        rows.append({"clients": n, "clients_per_round": 10, "rounds": rounds, "total_seconds": res.seconds,
                     "first_round_seconds": res.rounds[0].seconds, "median_later_round_seconds":
                     sorted(steady)[len(steady) // 2]})
        print(rows[-1])
    write("round_time.json", {"note": "first round includes Ray actor start-up and data loading", "rows": rows})


def subject_mia(rounds: int) -> None:
    """Which clients took part? Members: the federation's clients; non-members: label-matched subjects.

    Flower's FedAvg strategy and privlab's ClientApp on the in-process grid (no Ray start-up; the
    same code the simulation runs). 50 clients of 40 examples, 10 per round, 5 local epochs: small
    clients, so the global model fits each one's examples and the attack has signal to find.
    """
    from privlab.fl.client import make_client_app
    from privlab.fl.inprocess import make_in_process_grid
    from privlab.fl.server import run_server
    from privlab.fl.subject_mia import subject_mia_experiment

    base = FedConfig(num_clients=50, clients_per_round=10, rounds=rounds, local_epochs=5.0, batch_size=10,
                     lr=0.05, train_size=2000, eval_size=2000, hidden=(128,))
    rows = []
    settings = [("FedAvg", None)] + [
        (f"DP-FedAvg z={z}", UserDPConfig(noise_multiplier=z, clip_norm=0.5)) for z in (0.3, 1.0)
    ]
    for name, dp in settings:
        cfg = replace(base, dp=dp)
        t0 = time.perf_counter()
        records, state = run_server(make_in_process_grid(make_client_app(cfg), cfg.num_clients), cfg)
        m = subject_mia_experiment(cfg, state)
        rows.append({"setting": name, "client_sampling": cfg.sampling, "accuracy": records[-1].accuracy,
                     "epsilon": records[-1].epsilon, "auc": m.auc, "auc_ci": list(m.auc_ci),
                     "tpr_at_10pct_fpr": m.tpr_at_fpr[0.1],
                     "tpr_at_1pct_fpr": m.tpr_at_fpr[0.01], "subjects": [m.n_members, m.n_nonmembers],
                     "seconds": time.perf_counter() - t0})
        print(rows[-1])
    write("subject_mia.json", {"config": base.to_dict(), "attack": "subject-level LOSS (mean loss over a subject)",
                               "nonmembers": "label-matched subjects from MNIST training rows beyond train_size",
                               "rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["accuracy", "inversion", "round_time", "subject_mia"])
    a = ap.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    if a.only in (None, "inversion"):
        inversion(4 if a.quick else 8)
    if a.only in (None, "round_time"):
        round_time(2 if a.quick else 3)
    if a.only in (None, "subject_mia"):
        subject_mia(5 if a.quick else 30)
    if a.only in (None, "accuracy"):
        accuracy(5 if a.quick else 30, 3 if a.quick else 15, 20000 if a.quick else 60000)


if __name__ == "__main__":
    main()
