"""A/B of the stacked-MLP kernel's two orientations for one dense layer of K models, per shape:

* ``in_out``: weights stored (K, in, out); forward ``a W^T`` as ``bmm(a, W^T)`` and weight gradient
  ``a^T dz`` into (K, in, out) (``stacked_mlp.transposed_layout``, the layout for wide layers);
* ``out_in``: weights stored (K, out, in); forward ``z^T = W a^T`` and weight gradient ``dz^T a``
  into (K, out, in) (the orientation of layers with fewer than ``stacked_mlp.NARROW`` outputs).

Each time is forward plus weight gradient (momentum folded in, ``beta = 0.9``), K = 20, B = 32, the
best of 5 repeats of ``--calls`` calls on the same tensors (hot caches), both orientations measured
in turn in one process. ``NARROW`` is set from these ratios.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/mia/ab_orientation.py --threads 1 2
        # writes results/ab_orientation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from privlab.report.environment import cpu_model
from privlab.train import stacked_mlp

HERE = Path(__file__).resolve().parent
SHAPES = [(784, 8), (784, 10), (784, 16), (784, 20), (784, 24), (784, 32), (784, 64), (784, 100),
          (64, 10), (100, 10), (256, 10), (64, 2)]  # (in, out)


def _best_us(fn: Callable[[], object], calls: int) -> float:
    for _ in range(max(1, calls // 10)):
        fn()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return 1e6 * best


def layer_times(d_in: int, d_out: int, k: int, batch: int, calls: int) -> dict[str, float]:
    """Forward plus weight-gradient time (us) of one layer in each orientation."""
    gen = torch.Generator().manual_seed(0)
    a, dz = torch.randn(k, batch, d_in, generator=gen), torch.randn(k, batch, d_out, generator=gen)
    w_io, g_io = torch.randn(k, d_in, d_out, generator=gen), torch.zeros(k, d_in, d_out)
    w_oi, g_oi = torch.randn(k, d_out, d_in, generator=gen), torch.zeros(k, d_out, d_in)
    dz_t = dz.transpose(1, 2).contiguous()  # the out_in orientation's output gradient is (K, out, B)

    def in_out() -> None:
        torch.bmm(a, w_io)
        g_io.baddbmm_(a.transpose(1, 2), dz, beta=0.9)

    def out_in() -> None:
        torch.bmm(w_oi, a.transpose(1, 2))
        g_oi.baddbmm_(dz_t, a, beta=0.9)

    t_io, t_oi = _best_us(in_out, calls), _best_us(out_in, calls)
    return {"in": d_in, "out": d_out, "in_out_us": t_io, "out_in_us": t_oi, "in_out_over_out_in": t_io / t_oi,
            "kernel_uses": "out_in" if stacked_mlp.is_narrow(d_out) else "in_out"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", type=int, default=20, help="K, models per chunk")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ab_orientation.json")
    args = ap.parse_args()
    rows = []
    for n in args.threads:
        torch.set_num_threads(n)
        for d_in, d_out in SHAPES:
            rows.append({"threads": n, **layer_times(d_in, d_out, args.models, args.batch_size, args.calls)})
            r = rows[-1]
            print(f"{n} thr {d_in:4d} -> {d_out:3d}: in_out {r['in_out_us']:7.1f} us, out_in {r['out_in_us']:7.1f} us "
                  f"({r['in_out_over_out_in']:.2f}x), kernel uses {r['kernel_uses']}")
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cpu_model": cpu_model(),
              "narrow": stacked_mlp.NARROW, "models": args.models, "batch_size": args.batch_size, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
