"""Data-parallel DP-SGD: the small CNN on MNIST in W processes of PyTorch's DistributedDataParallel.

Each rank clips its own examples; the clipped sums are added up once per step and the noise is drawn
once (on rank 0), so the mechanism, and epsilon, are those of one process with the global batch.
The loader's ``batch_size`` is per rank, as with DDP's DistributedSampler: q = W * 1024 / 60000.

Run (2 ranks on this host; with ``--nnodes`` / ``--rdzv-endpoint`` across hosts):
``OMP_NUM_THREADS=1 .venv/bin/torchrun --nproc-per-node 2 examples/dp_ddp.py --epochs 1``
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from privlab.data import load_mnist
from privlab.dp import make_private
from privlab.dp.checkpoint import save_checkpoint
from privlab.models import SmallCNN


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="runs/dp_ddp")
    args = ap.parse_args()

    dist.init_process_group("gloo")  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # DDP broadcasts rank 0's initial weights anyway
    train, test = load_mnist("train"), load_mnist("test")
    model = SmallCNN(activation="tanh")
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=4.0, momentum=0.5)
    loader = DataLoader(train, batch_size=2048 // world)  # per rank: the global expected batch stays 2048

    pt = make_private(ddp, optimizer, loader, target_epsilon=3.0, delta=1e-5, epochs=args.epochs,
                      max_grad_norm=1.0, clipping="ghost", seed=0)
    if rank == 0:
        print(f"{world} ranks: noise multiplier {pt.noise_multiplier:.3f}, sample rate {pt.sample_rate:.4f}, "
              f"{pt.steps} steps")

    criterion = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        for x, y in pt.data_loader:  # this rank's Poisson-sampled share of the global batch
            pt.optimizer.zero_grad()
            criterion(pt.model(x), y).backward()
            pt.optimizer.step()  # one all-reduce of the clipped sums, noise once, the same update everywhere
        if rank == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(test.x).argmax(1) == test.y).float().mean().item()
            model.train()
            print(f"epoch {epoch + 1}: test accuracy {acc:.4f}, epsilon {pt.epsilon():.3f}")

    if rank == 0:
        save_checkpoint(args.out, ddp, pt.accountant.ledger, {"example": "dp_ddp", "ranks": world})
        print(f"saved model.safetensors + ledger.json + config.json to {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
