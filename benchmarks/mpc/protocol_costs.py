"""Per-element traffic of each privlab.mpc protocol (the table of docs/mpc.md), from the counters.

    PYTHONPATH=src .venv/bin/python benchmarks/mpc/protocol_costs.py [--n 1024]
    PYTHONPATH=src .venv/bin/python benchmarks/mpc/protocol_costs.py --trees [--cmp-bits 40]

Runs each protocol once on ``n`` elements with the in-process transport and dealer
(``MPCConfig(range_checks=False)``: the protocols' own cost) and writes
``results/protocol_costs.json``: rounds, bytes between the parties (both directions) and bytes
exchanged with the dealer (requests included), per element (softmax and LayerNorm: per element
of rows of 16).

``--trees`` instead sweeps every comparison tree (``MPCConfig.cmp_tree``) of 2 or 3 levels with
fan-ins 2 to 4 and at most ``cmp_bits - 1`` digits: a ReLU's rounds, party and dealer bytes per
element under each (checked against the plaintext ReLU), sorted by rounds and then by total bytes,
written to ``results/cmp_trees.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _per_element(
    fn: Callable[..., torch.Tensor], xs: list[torch.Tensor], cfg: MPCConfig, n: int
) -> tuple[dict[str, Any], torch.Tensor]:
    """One run of ``fn`` on shares: its rounds and bytes per element, and the revealed output."""
    task = (fn, xs, 1, True)
    res = run_local(eval_task, (task, task), cfg)
    op = res.stats.per_op["op"]
    return {"rounds": op.rounds, "bytes": op.bytes / n, "dealer_bytes": op.dealer_bytes / n}, res.outputs[0]


def sweep_trees(n: int, cmp_bits: int) -> None:
    """A ReLU's cost under every tree of 2-3 levels (fan-ins 2-4); writes results/cmp_trees.json."""
    x = _x(n, -100, 100)
    rows = []
    for levels in (2, 3):
        for tree in itertools.product((2, 3, 4), repeat=levels):
            if math.prod(tree) > cmp_bits - 1:
                continue
            cfg = MPCConfig(cmp_bits=cmp_bits, cmp_tree=tree, range_checks=False)
            row, out = _per_element(compare.relu, [x], cfg, n)
            err = float((out - x.relu()).abs().max())
            if err > 1e-3:
                raise SystemExit(f"cmp_tree {tree}: ReLU off by {err}")
            rows.append({"cmp_tree": list(tree), **row, "total": row["bytes"] + row["dealer_bytes"]})
    rows.sort(key=lambda r: (r["rounds"], r["total"]))
    for r in rows:
        print(f"{tuple(r['cmp_tree'])!s:10s} rounds {r['rounds']}  party {r['bytes']:6.2f}  "
              f"dealer {r['dealer_bytes']:6.2f}  both {r['total']:6.2f}")
    doc = {"schema_version": 1, "suite": "mpc_cmp_trees", "n": n, "cmp_bits": cmp_bits, "op": "relu",
           "per_element": rows}
    path = HERE / "results" / "cmp_trees.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--trees", action="store_true", help="sweep the comparison trees instead (results/cmp_trees.json)")
    ap.add_argument("--cmp-bits", type=int, default=MPCConfig.cmp_bits, help="comparison width of the --trees sweep")
    args = ap.parse_args()
    if args.trees:
        sweep_trees(args.n, args.cmp_bits)
        return
    cfg = MPCConfig(range_checks=False)
    out: dict[str, dict[str, float]] = {}
    for name, (fn, xs) in _cases(args.n).items():
        row, _ = _per_element(fn, xs, cfg, args.n)
        out[name] = row
        print(f"{name:28s} rounds {row['rounds']:3d}  bytes {row['bytes']:8.2f}  dealer {row['dealer_bytes']:8.2f}")
    doc = {"schema_version": 1, "suite": "mpc_protocol_costs", "n": args.n,
           "config": {"frac_bits": cfg.frac_bits, "cmp_bits": cfg.cmp_bits, "cmp_tree": list(cfg.cmp_tree),
                      "cmp_digits": cfg.cmp_digits},
           "per_element": out}
    path = HERE / "results" / "protocol_costs.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
