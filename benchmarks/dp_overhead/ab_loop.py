"""The per-layer clipping loop's Python overhead: the shipped loop against two leaner forms.

On the GPT's four Linear shapes (B = 32, T = 128, hot caches, 1 thread), median ms per layer call of:

* ``nonprivate``: the batch-summed weight gradient, one product;
* ``products_only``: the loop's 32 per-example products and nothing else (its floor);
* ``shipped``: ``layers._clipped_weight_by_example`` (product, norm, clipped add per example);
* ``lean``: the same with ``G`` transposed once and the norm by ``torch.dot``;
* ``torchscript``: the shipped loop under ``torch.jit.script`` (no Python per iteration).

Every variant is checked equal to the shipped one; ``--repeats`` interleaves the variants.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dp_overhead/ab_loop.py   # writes results/ab_loop.json
"""

from __future__ import annotations

import argparse
import functools
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from ab_per_layer import _median_ms  # benchmark-local

from privlab.dp.layers import _clipped_weight_by_example
from privlab.dp.mechanism import clip_factor
from privlab.report.environment import cpu_model

HERE = Path(__file__).resolve().parent
SHAPES = [(128, 384), (128, 128), (128, 512), (512, 128)]  # (d, p) of the GPT's Linear layers
Loop = Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]


def nonprivate(g: torch.Tensor, a: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    return g.reshape(-1, g.shape[-1]).t().mm(a.reshape(-1, a.shape[-1]))


def products_only(g: torch.Tensor, a: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    buf = g.new_empty(g.shape[-1], a.shape[-1])
    for g_i, a_i in zip(g.transpose(1, 2), a, strict=True):
        torch.mm(g_i, a_i, out=buf)
    return buf


def lean(g: torch.Tensor, a: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    buf = g.new_empty(g.shape[-1], a.shape[-1])
    w, flat = torch.zeros_like(buf), buf.view(-1)
    for g_i, a_i in zip(g.transpose(1, 2), a, strict=True):
        torch.mm(g_i, a_i, out=buf)
        norm = abs(scale) * float(torch.dot(flat, flat)) ** 0.5
        w.add_(buf, alpha=scale * clip_factor(norm, threshold))
    return w


def _scripted() -> Loop:
    def loop(g: torch.Tensor, a: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
        buf = torch.empty(g.shape[-1], a.shape[-1], dtype=g.dtype)
        w = torch.zeros_like(buf)
        gt = g.transpose(1, 2)
        for i in range(g.shape[0]):
            torch.mm(gt[i], a[i], out=buf)
            norm = abs(scale) * float(torch.linalg.vector_norm(buf))
            w.add_(buf, alpha=scale * min(1.0, threshold / (norm + 1e-6)))
        return w

    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.x
        warnings.simplefilter("ignore")
        return torch.jit.script(loop)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ab_loop.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    loops: dict[str, Loop] = {"nonprivate": nonprivate, "products_only": products_only,
                              "shipped": _clipped_weight_by_example, "lean": lean, "torchscript": _scripted()}
    rows = []
    for d, p in SHAPES:
        g, a = torch.randn(32, 128, p), torch.randn(32, 128, d)
        ref = _clipped_weight_by_example(g, a, 1 / 32, 1.0)
        for name in ("lean", "torchscript"):
            if not torch.allclose(loops[name](g, a, 1 / 32, 1.0), ref, rtol=1e-4, atol=1e-6):
                raise SystemExit(f"{name} differs from the shipped loop at d={d}, p={p}")
        times: dict[str, list[float]] = {k: [] for k in loops}
        for _ in range(args.repeats):
            for name, fn in loops.items():
                times[name].append(_median_ms(functools.partial(fn, g, a, 1 / 32, 1.0), n=30))
        row = {"d": d, "p": p, **{f"{k}_ms": min(v) for k, v in times.items()}}
        rows.append(row)
        print(d, p, {k: round(v, 3) for k, v in row.items() if k.endswith("_ms")})
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k.endswith("_ms")}
    print("sum over the four shapes (x4 blocks per GPT step):", {k: round(v, 2) for k, v in total.items()})
    args.out.write_text(json.dumps({"cpu_model": cpu_model(), "rows": rows, "sum_ms": total}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
