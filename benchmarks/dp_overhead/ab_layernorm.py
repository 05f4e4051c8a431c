"""A/B of the per-example LayerNorm rule: the shipped centred route against a one-pass rule (not kept).

Shipped (``layers._norm_affine_grads`` with the forward's ``(mean, rstd)``): ``xhat = (x - mu) r``,
``dgamma_i = sum_t g_t * xhat_t``, ``dbeta_i = sum_t g_t``. The alternative, ``_one_pass`` below,
never builds ``xhat``: ``dgamma_i = sum_t r_t g_t * x_t - sum_t (mu_t r_t) g_t`` by one elementwise
product and two batched products over the positions (its rounding grows like ``1 + |mu| r``).

* ``kernel``: per LayerNorm shape of the GPT and the encoder (B = 32, T = 128), the capture's
  backward work: the input gradient (``native_layer_norm_backward``) plus the per-example gain and
  bias gradients by either rule, against the non-private backward (all three gradients summed
  over the batch). Median ms, hot and with the caches flushed (a 32 MiB write) before each call.
* ``steps``: non-private and ``privlab-per_layer`` steps of one model in one process, the
  per_layer steps alternating between the two rules, rounds interleaved; median ms and ratios.

    MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432 OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/dp_overhead/ab_layernorm.py --models gpt encoder
        # writes results/ab_layernorm.json (~2 min); without the two malloc settings
        # (glibc's defaults): --out results/ab_layernorm_default_malloc.json
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

import run  # benchmark-local (the script's folder is on sys.path): the models and the step
import torch
from ab_per_layer import _median_ms
from torch import nn

from privlab.dp import layers
from privlab.report.environment import cpu_model

HERE = Path(__file__).resolve().parent
SHIPPED = layers._norm_affine_grads


def _one_pass(module: nn.Module, calls: Any, stats: Any = None) -> dict[str, torch.Tensor]:
    """The alternative rule for one captured LayerNorm call (any other call: the shipped rule)."""
    if stats is None or not isinstance(module, nn.LayerNorm) or module.bias is None or len(calls) != 1:
        return SHIPPED(module, calls, stats)
    (x, g), (mean, rstd) = calls[0], stats
    B, C = x.shape[0], module.weight.numel()
    x3, g3 = x.reshape(B, -1, C), g.reshape(B, -1, C)
    shift = (mean * rstd).reshape(B, 1, -1)  # (B, 1, T)
    corr = torch.bmm(torch.cat([shift.neg(), torch.ones_like(shift)], 1), g3)  # (B, 2, C)
    gw = torch.baddbmm(corr[:, :1], rstd.reshape(B, 1, -1), g3 * x3).view(B, C)
    return {"weight": gw, "bias": corr[:, 1]}


RULES = {"centred": SHIPPED, "one_pass": _one_pass}


def _flushed_median_ms(fn: Callable[[], Any], n: int = 20) -> float:
    fn()
    ts = []
    for _ in range(n):
        torch.empty(8 << 20).fill_(1.0)  # 32 MiB written: x and g leave the caches, as in a step
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def kernel_row(C: int, B: int = 32, T: int = 128) -> dict[str, Any]:
    torch.manual_seed(C)
    ln = nn.LayerNorm(C)
    x, g = torch.randn(B, T, C) * 2 + 0.5, torch.randn(B, T, C)
    _, mean, rstd = torch.native_layer_norm(x, (C,), ln.weight, ln.bias, ln.eps)
    backward = torch.ops.aten.native_layer_norm_backward

    def nonprivate() -> Any:
        return backward(g, x, (C,), mean, rstd, ln.weight, ln.bias, [True, True, True])

    def captured(rule: str) -> Callable[[], Any]:
        def fn() -> Any:
            gx = backward(g, x, (C,), mean, rstd, ln.weight, ln.bias, [True, False, False])[0]
            return gx, RULES[rule](ln, [(x, g)], (mean, rstd))

        return fn

    one, centred = captured("one_pass")()[1], captured("centred")()[1]
    for k in one:
        torch.testing.assert_close(one[k], centred[k], rtol=1e-4, atol=1e-3)
    row: dict[str, Any] = {"B": B, "T": T, "C": C}
    for name, fn in (("nonprivate", nonprivate), ("centred", captured("centred")), ("one_pass", captured("one_pass"))):
        row[f"{name}_hot_ms"] = _median_ms(fn, 20)
        row[f"{name}_flushed_ms"] = _flushed_median_ms(fn)
    return row


def step_ab(model: str, rounds: int) -> dict[str, Any]:
    steps = {"nonprivate": run.make_step(model, "nonprivate"), "per_layer": run.make_step(model, "privlab-per_layer")}
    plan = [("nonprivate", "centred"), ("per_layer centred", "centred"), ("per_layer one_pass", "one_pass")]
    ts: dict[str, list[float]] = {name: [] for name, _ in plan}
    try:
        for r in range(rounds + 2):  # two warm-up rounds
            for name, rule in plan:
                layers._norm_affine_grads = RULES[rule]  # type: ignore[assignment]
                fn = steps[name.split()[0]]
                t = time.perf_counter()
                fn()
                if r >= 2:
                    ts[name].append(time.perf_counter() - t)
    finally:
        layers._norm_affine_grads = SHIPPED
    ms = {k: 1e3 * statistics.median(v) for k, v in ts.items()}
    return {"step_ms": ms, "ratio_to_nonprivate": {k: v / ms["nonprivate"] for k, v in ms.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gpt", "encoder"], choices=["encoder", "gpt"])
    ap.add_argument("--rounds", type=int, default=12, help="Interleaved rounds of steps per model.")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ab_layernorm.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cpu_model": cpu_model(),
              "kernel": [kernel_row(C) for C in (128, 256)],
              "steps": {m: step_ab(m, args.rounds) for m in args.models}}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
