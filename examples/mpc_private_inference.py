"""Private inference with privlab.mpc: a model owner and a data owner run a CNN on secret shares.

    .venv/bin/python examples/mpc_private_inference.py [--transport gloo]

Party 0 holds the model, party 1 holds the images; a dealer supplies correlated randomness.
Only party 1 learns the logits. Prints the cost (rounds, bytes) and agreement with plaintext.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn

from privlab.mpc.config import MPCConfig
from privlab.mpc.inference import private_inference


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", default="local", choices=["local", "gloo"])
    args = ap.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(  # any module built from supported layers works
        nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 12 * 12, 10),
    ).eval()
    images = torch.rand(16, 1, 28, 28)
    res = private_inference(model, images, MPCConfig(timeout=60), transport=args.transport)
    print(f"predicted classes    {res.output.argmax(-1).tolist()}")
    print(f"agreement            {res.argmax_agreement:.0%} (max |error| {res.max_abs_error:.1e})")
    print(f"rounds               {res.stats.rounds}")
    print(f"bytes between parties {res.stats.bytes / 1e6:.2f} MB, from dealer "
          f"{res.stats.dealer_bytes / 1e6:.2f} MB, time {res.seconds:.2f} s")


if __name__ == "__main__":
    main()
