"""SPU 0.9.5 SEMI2K cost of single operations, per element, in the convention of docs/mpc.md.

Usage: /tmp/spu-venv/bin/python benchmarks/mpc/spu_units.py [--n 1024] [--fxp 18]
           [--beaver TrustedFirstParty] [--out results/spu_units_<time>.json]

Each operation is one JAX program on secret inputs of ``n`` elements (``[n/16, 16]`` for the
row-wise softmax and LayerNorm), run by ``spu_side.run_program`` on two SEMI2K parties (FM64).
``bytes / element`` is both parties' send bytes divided by ``n`` (the output stays secret, so no
opening is counted); ``rounds`` is the larger party's send-action count (see ``spu_side``).
Errors are against JAX's float32 result: absolute, and relative to ``max(|ref|, 1)``.
Beaver triples from ``TrustedFirstParty`` cost no traffic, so there is no dealer column.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spu
from spu_side import run_program, runtime_config


def _layer_norm(x: jax.Array) -> jax.Array:
    mu = x.mean(axis=-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-5)


# name -> (program, number of secret inputs, input sampler on [n] floats, row-wise over 16)
OPS: dict[str, tuple[Callable[..., jax.Array], int, Callable[[np.random.Generator, int], np.ndarray], bool]] = {
    "truncation (x * public real)": (lambda x: x * 0.37, 1, lambda g, n: g.normal(size=n), False),
    "mul (x * y)": (lambda x, y: x * y, 2, lambda g, n: g.normal(size=n), False),
    "comparison (x > 0)": (lambda x: x > 0, 1, lambda g, n: g.normal(size=n), False),
    "ReLU": (jax.nn.relu, 1, lambda g, n: g.normal(size=n), False),
    "max of two": (jnp.maximum, 2, lambda g, n: g.normal(size=n), False),
    "exp": (jnp.exp, 1, lambda g, n: g.uniform(-8, 4, size=n), False),
    "reciprocal": (lambda x: 1.0 / x, 1, lambda g, n: g.uniform(1, 16, size=n), False),
    "rsqrt": (jax.lax.rsqrt, 1, lambda g, n: g.uniform(1, 16, size=n), False),
    "GELU (exact, erf)": (
        lambda x: jax.nn.gelu(x, approximate=False),
        1,
        lambda g, n: g.normal(size=n) * 2,
        False,
    ),
    "GELU (tanh approximation)": (jax.nn.gelu, 1, lambda g, n: g.normal(size=n) * 2, False),
    "softmax over 16": (lambda x: jax.nn.softmax(x, axis=-1), 1, lambda g, n: g.normal(size=n) * 2, True),
    "LayerNorm over 16 (no affine)": (_layer_norm, 1, lambda g, n: g.normal(size=n) * 2, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1024, help="elements per operation (a multiple of 16)")
    ap.add_argument("--fxp", type=int, default=18)
    ap.add_argument("--beaver", default="TrustedFirstParty")
    ap.add_argument("--out", default=None, help="JSON path (default results/spu_units_<time>.json)")
    a = ap.parse_args()
    if a.n <= 0 or a.n % 16:
        raise SystemExit(f"spu_units: --n must be a positive multiple of 16, got {a.n}")
    cfg = runtime_config(a.fxp, a.beaver)
    g = np.random.default_rng(0)
    rows = []
    for name, (fn, arity, sample, rows16) in OPS.items():
        args = tuple(
            sample(g, a.n).astype(np.float32).reshape((a.n // 16, 16) if rows16 else (a.n,)) for _ in range(arity)
        )
        out, fig = run_program(fn, args, cfg)
        ref = np.asarray(jax.jit(fn)(*args), dtype=np.float64)
        diff = np.abs(out.astype(np.float64) - ref)
        rows.append(
            {
                "op": name,
                "rounds": fig["rounds"],
                "bytes_per_element": fig["bytes"] / a.n,
                "max_abs_error": float(diff.max()),
                "max_rel_error": float((diff / np.maximum(np.abs(ref), 1.0)).max()),
                "seconds": fig["seconds"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "schema_version": 1,
        "suite": "spu_unit_costs",
        "n": a.n,
        "config": {"protocol": "SEMI2K", "field": "FM64", "fxp_fraction_bits": a.fxp, "beaver_type": a.beaver},
        "spu": spu.__version__,
        "jax": jax.__version__,
        "rows": rows,
    }
    out_path = (
        Path(a.out)
        if a.out
        else Path(__file__).resolve().parent / "results" / (f"spu_units_{time.strftime('%Y%m%d_%H%M%S')}.json")
    )
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
