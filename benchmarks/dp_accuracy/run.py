"""MNIST + SmallCNN (tanh) with DP-SGD at a target epsilon: writes the accuracy/epsilon curve as JSON.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dp_accuracy/run.py --epochs 40`` (see README.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from privlab.data import load_mnist
from privlab.dp import make_private
from privlab.models import SmallCNN

HERE = Path(__file__).parent


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = sum(int((model(x[i : i + 2000]).argmax(1) == y[i : i + 2000]).sum()) for i in range(0, len(y), 2000))
    model.train()
    return correct / len(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target-epsilon", type=float, default=3.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=2.0)
    ap.add_argument("--momentum", type=float, default=0.5)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--clipping", default="ghost")
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mnist_cnn_eps3.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train, test = load_mnist("train"), load_mnist("test")
    model = SmallCNN(activation="tanh")
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loader = DataLoader(train, batch_size=args.batch_size)
    pt = make_private(
        model, opt, loader, target_epsilon=args.target_epsilon, delta=args.delta, epochs=args.epochs,
        max_grad_norm=args.max_grad_norm, clipping=args.clipping, seed=args.seed,
    )
    crit = nn.CrossEntropyLoss()
    sched = None
    if args.lr_schedule == "cosine":  # post-processing of the noisy gradients: no privacy cost
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * len(pt.data_loader))
    curve = []
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        for x, y in pt.data_loader:
            pt.optimizer.zero_grad()
            crit(pt.model(x), y).backward()
            pt.optimizer.step()
            if sched is not None:
                sched.step()
        acc = accuracy(model, test.x, test.y)
        eps = pt.epsilon()
        curve.append({"epoch": epoch, "steps": pt.accountant.steps, "epsilon": eps, "test_accuracy": acc,
                      "elapsed_s": round(time.time() - t0, 1)})
        print(json.dumps(curve[-1]), flush=True)
    result = {
        "schema_version": 1,
        "benchmark": "dp_accuracy/mnist_smallcnn",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "noise_multiplier": pt.noise_multiplier,
        "sample_rate": pt.sample_rate,
        "final": curve[-1],
        "curve": curve,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
