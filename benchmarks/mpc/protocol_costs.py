"""Per-element traffic of each privlab.mpc protocol (the table of docs/mpc.md), from the counters.

    PYTHONPATH=src .venv/bin/python benchmarks/mpc/protocol_costs.py [--n 1024]

Runs each protocol once on ``n`` elements with the in-process transport and dealer
(``MPCConfig(range_checks=False)``: the protocols' own cost) and writes
``results/protocol_costs.json``: rounds, bytes between the parties (both directions) and bytes
exchanged with the dealer (requests included), per element (softmax and LayerNorm: per element
of rows of 16).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch

from privlab.mpc.config import MPCConfig
from privlab.mpc.launch import run_local
from privlab.mpc.party import Party
from privlab.mpc.protocols import arith, compare
from privlab.mpc.protocols import nonlinear as nl
from privlab.mpc.tasks import eval_task

HERE = Path(__file__).resolve().parent


def _x(n: int, lo: float, hi: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo


def _cases(n: int) -> dict[str, tuple[Callable[..., torch.Tensor], list[torch.Tensor]]]:
    rows = _x(n, -4, 4).reshape(-1, 16)

    def relu2(p: Party, a: torch.Tensor) -> torch.Tensor:
        return compare.max_pool2d(p, a.reshape(1, -1, 2, 2), 2)

    return {
        "trunc": (lambda p, a: arith.trunc(p, a), [_x(n, -4, 4)]),
        "mul": (arith.mul, [_x(n, -4, 4), _x(n, -4, 4)]),
        "relu": (compare.relu, [_x(n, -100, 100)]),
        "drelu": (compare.drelu, [_x(n, -100, 100)]),
        "max_pool2d_2x2 (per output)": (relu2, [_x(4 * n, -100, 100)]),
        "exp": (nl.exp, [_x(n, -16, 8)]),
        "reciprocal": (nl.reciprocal, [_x(n, 0.01, 100)]),
        "rsqrt": (nl.rsqrt, [_x(n, 0.01, 100)]),
        "sqrt": (nl.sqrt, [_x(n, 0.01, 100)]),
        "log": (nl.log, [_x(n, 0.1, 100)]),
        "sigmoid": (nl.sigmoid, [_x(n, -8, 8)]),
        "tanh": (nl.tanh, [_x(n, -8, 8)]),
        "gelu": (nl.gelu, [_x(n, -8, 8)]),
        "softmax over 16": (nl.softmax, [rows]),
        "layer_norm over 16": (lambda p, a: nl.layer_norm(p, a, None, None), [rows]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1024)
    args = ap.parse_args()
    cfg = MPCConfig(range_checks=False)
    out: dict[str, dict[str, float]] = {}
    for name, (fn, xs) in _cases(args.n).items():
        task = (fn, xs, 1, True)
        res = run_local(eval_task, (task, task), cfg)
        op = res.stats.per_op["op"]
        out[name] = {"rounds": op.rounds, "bytes": op.bytes / args.n, "dealer_bytes": op.dealer_bytes / args.n}
        row = out[name]
        print(f"{name:28s} rounds {op.rounds:3d}  bytes {row['bytes']:8.2f}  dealer {row['dealer_bytes']:8.2f}")
    doc = {"schema_version": 1, "suite": "mpc_protocol_costs", "n": args.n,
           "config": {"frac_bits": cfg.frac_bits, "cmp_bits": cfg.cmp_bits, "cmp_tree": list(cfg.cmp_tree),
                      "cmp_digits": cfg.cmp_digits},
           "per_element": out}
    path = HERE / "results" / "protocol_costs.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
