"""Where per-layer DP-SGD's extra step time goes, and the Linear per-example paths on the models' shapes.

* ``steps``: non-private and ``privlab-per_layer`` steps of one model alternate in one process;
  ``DPOptimizer._clip_layer`` (by layer type), ``mechanism.add_noise`` and the clipped-sum collection
  are timed by wrapping them (ms per step). A third step, per_layer with the Linear per-example
  loop replaced by the non-private weight-gradient product (no clipping: timing only), separates
  the loop's cost from the rest of the capture's.
* ``linear``: per Linear shape of the encoder and the GPT (B = 32, T = 128), hot caches: the
  non-private weight gradient (one product over all B T rows), the shipped one-example-at-a-time
  per-layer clipping (``layers._clipped_weight_by_example``), the same in groups of 2, 4, 8 examples
  per batched product into one buffer, and the ``(B, p, d)`` per-example gradients materialised
  whole (``layers._linear_dw``: what flat and ghost clipping build).

    MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432 OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/dp_overhead/breakdown.py --models gpt encoder
        # writes results/breakdown.json (the malloc settings are run.py's "tuned" ones)
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import run  # benchmark-local (the script's folder is on sys.path): the models and the step
import torch
from ab_per_layer import _median_ms

from privlab.dp import layers, mechanism, optimizer
from privlab.report.environment import cpu_model

HERE = Path(__file__).resolve().parent
SHAPES = [(128, 384), (128, 128), (128, 512), (512, 128), (256, 768), (256, 256), (256, 1024), (1024, 256)]  # (d, p)


Totals = collections.defaultdict[str, float]


def _timed(totals: Totals, fn: Callable[..., Any], key: Callable[..., str]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        totals[key(*args)] += time.perf_counter() - t
        return out

    return wrapper


ONE_PRODUCT = "privlab-per_layer, Linear weights by one product (timing only)"


def _one_product(g: torch.Tensor, a: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    """The non-private weight gradient in place of the per-example loop: not clipped, for timing only."""
    return g.reshape(-1, g.shape[-1]).t().mm(a.reshape(-1, a.shape[-1])).mul_(scale)


def step_split(model: str, rounds: int) -> dict[str, Any]:
    totals: Totals = collections.defaultdict(float)
    patches = {
        (optimizer.DPOptimizer, "_clip_layer"): lambda self, m, *_: f"clip {type(m).__name__}",
        (optimizer.DPOptimizer, "_clipped_sum"): lambda *_: "collect clipped sums",
        (mechanism, "add_noise"): lambda *_: "noise",
    }
    originals = {k: getattr(*k) for k in patches}
    for (obj, name), key in patches.items():
        setattr(obj, name, _timed(totals, originals[(obj, name)], key))
    loop = layers._clipped_weight_by_example
    try:
        steps = {m: run.make_step(model, m) for m in ("nonprivate", "privlab-per_layer")}
        steps[ONE_PRODUCT] = run.make_step(model, "privlab-per_layer")
        for fn in steps.values():
            fn(), fn()  # warm-up
        totals.clear()
        wall: Totals = collections.defaultdict(float)
        for _ in range(rounds):
            for m, fn in steps.items():
                kept = dict(totals)  # the DP calls are timed for the shipped per_layer step only
                layers._clipped_weight_by_example = _one_product if m == ONE_PRODUCT else loop
                t = time.perf_counter()
                fn()
                wall[m] += time.perf_counter() - t
                if m == ONE_PRODUCT:
                    totals.clear()
                    totals.update(kept)
    finally:
        layers._clipped_weight_by_example = loop
        for (obj, name), fn in originals.items():
            setattr(obj, name, fn)
    ms = 1e3 / rounds
    return {"step_ms": {m: v * ms for m, v in wall.items()}, "dp_calls_ms": {k: v * ms for k, v in totals.items()}}


def _by_group(g: torch.Tensor, a: torch.Tensor, scale: float, threshold: float, k: int) -> torch.Tensor:
    """Per-layer clipped weight sum with ``k`` examples per batched product (the alternative measured)."""
    p, d = g.shape[-1], a.shape[-1]
    buf, w = g.new_empty(k, p, d), g.new_zeros(p * d)
    for gs, as_ in zip(g.split(k), a.split(k), strict=True):
        flat = torch.bmm(gs.transpose(1, 2), as_, out=buf[: gs.shape[0]]).view(gs.shape[0], -1)
        norms = torch.linalg.vector_norm(flat, dim=1).mul_(abs(scale))
        w.addmv_(flat.t(), mechanism.clip_factors(norms, threshold).mul_(scale))
    return w.view(p, d)


def linear_row(d: int, p: int) -> dict[str, Any]:
    """One Linear shape (B = 32, T = 128): each path's median ms; the grouped paths checked against the shipped."""
    a, g = torch.randn(32, 128, d), torch.randn(32, 128, p) * 0.01
    shipped = layers._clipped_weight_by_example(g, a, 32.0, 0.1)
    row: dict[str, Any] = {
        "d": d, "p": p, "per_example_kib": p * d * 4 >> 10,
        "nonprivate_ms": _median_ms(lambda: g.reshape(-1, p).t().mm(a.reshape(-1, d))),
        "by_example_ms": _median_ms(lambda: layers._clipped_weight_by_example(g, a, 32.0, 0.1)),
        "materialised_ms": _median_ms(lambda: layers._linear_dw(g, a, 32.0)),
    }
    for k in (2, 4, 8):
        if k * p * d * 4 <= 1 << 20:  # the buffer fits one core's L2 here (1 MiB)
            torch.testing.assert_close(_by_group(g, a, 32.0, 0.1, k), shipped, rtol=1e-4, atol=1e-6)
            row[f"groups_of_{k}_ms"] = _median_ms(functools.partial(_by_group, g, a, 32.0, 0.1, k))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gpt", "encoder"], choices=["cnn", "encoder", "gpt"])
    ap.add_argument("--rounds", type=int, default=8, help="Alternating steps per mode.")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "breakdown.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cpu_model": cpu_model(),
              "steps": {m: step_split(m, args.rounds) for m in args.models},
              "linear": [linear_row(d, p) for d, p in SHAPES]}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
