"""A/B of the per-example Conv2d weight-gradient routes on the CNN's two convolutions (B = 256).

Why the CNN's DP step stays above 1.10x: its gap is mostly the per-example convolution weight
gradients, ``dW_i[o, c, u, v] = sum_{p, q} g_i[o, p, q] x_i[c, s p + u - pad, s q + v - pad]``, which
take the place of the batch-summed non-private weight gradient. Routes, each checked equal to the
shipped one (``layers.conv_weight_per_example``):

* ``nonprivate``: the batch-summed weight gradient (``convolution_backward``, weight only);
* ``shipped``: Cin = 1, a forward convolution with the examples as channels and ``g`` as the kernel;
  otherwise the grouped weight-gradient convolution with B groups (Rochette et al. 2019);
* ``unfold_bmm``: ``F.unfold`` of the input, then one batched product ``g_i @ A_i^T``;
* ``window_bmm``: the same product with the unfold built as one copy of an ``as_strided`` window
  view of the padded input, laid out (B, positions, Cin*kh*kw) (no ``F.unfold``);
* ``shipped_no_mkldnn``: the shipped route with MKL-DNN disabled (PyTorch's native kernels);
* ``inductor`` (with ``--inductor``): ``window_bmm`` through ``torch.compile`` (Inductor's CPU
  backend, static shapes; ``--inductor-mode max-autotune`` also lets it try its C++ GEMM template).
  Inductor fuses the pad and the window copy into one generated C++ loop and keeps the extern
  ``bmm``; the compile seconds go in the JSON beside the hot time.

Median ms over hot calls, one thread unless ``--threads``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dp_overhead/ab_conv.py   # writes results/ab_conv.json (~10 s)
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dp_overhead/ab_conv.py --threads 2 \\
        --out benchmarks/dp_overhead/results/ab_conv_2threads.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dp_overhead/ab_conv.py --inductor \\
        --out benchmarks/dp_overhead/results/ab_conv_inductor.json   # needs a C++ compiler (~30 s)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from ab_per_layer import _median_ms  # benchmark-local (the script's folder is on sys.path)
from torch import nn

from privlab.dp import layers
from privlab.models.vision import SmallCNN
from privlab.report.environment import cpu_model

HERE = Path(__file__).resolve().parent


def _nonprivate(conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.convolution_backward(
        g, x, conv.weight, None, conv.stride, conv.padding, conv.dilation, False, [0, 0], 1, [False, True, False]
    )[1]


def _unfold_bmm(conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    B = x.shape[0]
    A = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (B, Cin*kh*kw, P)
    return torch.bmm(g.reshape(B, g.shape[1], -1), A.transpose(1, 2)).view(B, *conv.weight.shape)


def _window_bmm(conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    (sh, sw), (ph, pw), (dh, dw) = (tuple(v) for v in layers._conv_args(conv))
    xp = F.pad(x, (pw, pw, ph, ph))
    B, C = xp.shape[:2]
    P, Q = g.shape[2:]
    kh, kw = conv.kernel_size
    s = xp.stride()
    win = xp.as_strided((B, P, Q, C, kh, kw), (s[0], s[2] * sh, s[3] * sw, s[1], s[2] * dh, s[3] * dw))
    A = win.reshape(B, P * Q, C * kh * kw)  # the one copy
    return torch.bmm(g.reshape(B, g.shape[1], P * Q), A).view(B, *conv.weight.shape)


def _no_mkldnn(conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    with torch.backends.mkldnn.flags(enabled=False):
        return layers.conv_weight_per_example(conv, x, g)


ROUTES: dict[str, Callable[[nn.Conv2d, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "nonprivate": _nonprivate,
    "shipped": layers.conv_weight_per_example,
    "unfold_bmm": _unfold_bmm,
    "window_bmm": _window_bmm,
    "shipped_no_mkldnn": _no_mkldnn,
}


def _inductor(conv: nn.Conv2d, mode: str | None) -> tuple[Callable[[nn.Conv2d, torch.Tensor, torch.Tensor], Any], dict]:
    """``window_bmm`` compiled by Inductor for this convolution; the dict receives the compile seconds."""
    compiled = torch.compile(lambda x, g: _window_bmm(conv, x, g), dynamic=False, mode=mode)
    info: dict[str, float] = {}

    def route(_: nn.Conv2d, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if not info:  # the first call compiles
            t = time.perf_counter()
            out = compiled(x, g)
            info["compile_s"] = time.perf_counter() - t
            return out
        return compiled(x, g)

    return route, info


def conv_row(name: str, conv: nn.Conv2d, x: torch.Tensor, n: int, inductor: str | None = None) -> dict[str, Any]:
    """Times every route on one convolution with input ``x`` and a random output gradient.

    ``inductor`` adds the compiled route (``"default"`` or ``"max-autotune"``); ``None`` leaves it out.
    """
    g = torch.randn_like(conv(x))  # the caller runs under no_grad
    ref = layers.conv_weight_per_example(conv, x, g)
    # float32 sums over B * positions (~50,000) terms, in another order at 2 threads: relative 1e-3
    torch.testing.assert_close(ref.sum(0), _nonprivate(conv, x, g), rtol=1e-3, atol=1e-3)
    routes, info = dict(ROUTES), {}
    if inductor is not None:
        routes["inductor"], info = _inductor(conv, None if inductor == "default" else inductor)
    for route in [r for r in routes if r not in ("nonprivate", "shipped")]:
        torch.testing.assert_close(routes[route](conv, x, g), ref, rtol=1e-4, atol=1e-4)
    row: dict[str, Any] = {"layer": name, "x": list(x.shape), "g": list(g.shape), "weight": list(conv.weight.shape)}
    row["ms"] = {route: _median_ms(lambda f=fn: f(conv, x, g), n) for route, fn in routes.items()}
    if info:
        row["inductor_compile_s"] = info["compile_s"]
    row["ratio_to_nonprivate"] = {k: v / row["ms"]["nonprivate"] for k, v in row["ms"].items()}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--calls", type=int, default=30, help="Timed calls per route.")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the DP benchmark runs at 1).")
    ap.add_argument("--inductor", action="store_true", help="Add the torch.compile route (needs a C++ compiler).")
    ap.add_argument("--inductor-mode", choices=("default", "max-autotune"), default="default")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ab_conv.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SmallCNN()
    x, rows = torch.randn(args.batch, 1, 28, 28), []
    inductor = args.inductor_mode if args.inductor else None
    with torch.no_grad():
        for m in model.features:  # each convolution timed on its input in the model
            if isinstance(m, nn.Conv2d):
                rows.append(conv_row(f"conv{len(rows) + 1}", m, x, args.calls, inductor))
            x = m(x)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu_model": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "inductor_mode": inductor,
        "layers": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
