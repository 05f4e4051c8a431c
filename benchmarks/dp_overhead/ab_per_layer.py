"""A/B of per-layer clipping's Linear path in one process, beside non-private training, all built
from the same weights and timed round-robin (median step):

* ``by_example``: ``layers.clipped_linear_sum`` as shipped (weights of at least ``LOOP_BYTES`` one
  example at a time, smaller ones in chunks);
* ``chunked``: the same with every weight in ``CHUNK_BYTES`` chunks of batched products;
* ``materialised``: each layer's ``(B, p, d)`` per-example gradients built whole and clipped
  (``layers.per_example_grads`` then ``mechanism.clipped_sum``, the path before issue 16).

Also times one 1024 x 256 Linear layer alone (B = 32, T = 128) by each path, and its non-private
weight gradient (one matrix product over all B T rows).

    MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432 OMP_NUM_THREADS=1 \
        .venv/bin/python benchmarks/dp_overhead/ab_per_layer.py --models encoder gpt --rounds 10
        # writes results/ab_per_layer.json (the malloc settings are run.py's "tuned" ones)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import run  # benchmark-local (the script's folder is on sys.path): the models and the step
import torch
from torch import nn

from privlab.dp import layers, mechanism, optimizer
from privlab.report.environment import cpu_model

HERE = Path(__file__).resolve().parent


def _materialised(
    self: Any, module: nn.Module, act: torch.Tensor, g: torch.Tensor, scale: float, stats: Any
) -> dict[str, torch.Tensor]:
    """The reference path: materialise the layer's per-example gradients, clip each tensor."""
    return self._clip_tensors(layers.per_example_grads(module, [(act, g)], scale, stats=stats))


def _median_ms(fn: Callable[[], Any], n: int = 8) -> float:
    for _ in range(2):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def _chunked() -> Any:
    """Within the block, every Linear weight goes by chunks (``LOOP_BYTES`` out of reach)."""
    return mock.patch.object(layers, "LOOP_BYTES", 1 << 62)


def layer_timing() -> dict[str, float]:
    lin = nn.Linear(256, 1024)
    a, g = torch.randn(32, 128, 256), torch.randn(32, 128, 1024)
    old = _median_ms(lambda: mechanism.clipped_sum(layers.per_example_grads(lin, [(a, g)], 32.0), 0.1, "flat"))
    with _chunked():
        chunked = _median_ms(lambda: layers.clipped_linear_sum(lin, a, g, 32.0, 0.1))
    new = _median_ms(lambda: layers.clipped_linear_sum(lin, a, g, 32.0, 0.1))
    plain = _median_ms(lambda: g.reshape(-1, 1024).t().mm(a.reshape(-1, 256)))
    return {"materialised_ms": old, "chunked_ms": chunked, "by_example_ms": new, "nonprivate_weight_grad_ms": plain}


def model_ab(model: str, rounds: int) -> dict[str, Any]:
    shipped = optimizer.DPOptimizer._clip_layer
    steps = {"nonprivate": run.make_step(model, "nonprivate"),
             "by_example": run.make_step(model, "privlab-per_layer"),
             "chunked": run.make_step(model, "privlab-per_layer")}
    optimizer.DPOptimizer._clip_layer = _materialised  # bound when the capture is built
    try:
        steps["materialised"] = run.make_step(model, "privlab-per_layer")
    finally:
        optimizer.DPOptimizer._clip_layer = shipped
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(rounds + 2):
        for k, step in steps.items():
            t = time.perf_counter()
            if k == "chunked":
                with _chunked():
                    step()
            else:
                step()
            if r >= 2:  # warm-up rounds
                times[k].append(time.perf_counter() - t)
    base = statistics.median(times["nonprivate"])
    return {k: {"step_s": statistics.median(v), "ratio": statistics.median(v) / base} for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["encoder", "gpt"])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ab_per_layer.json")
    args = ap.parse_args()
    run._setup(1)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cpu_model": cpu_model(),
              "layer_1024x256": layer_timing(), "models": {m: model_ab(m, args.rounds) for m in args.models}}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
