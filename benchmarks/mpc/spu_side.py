"""SecretFlow SPU 0.9.5 side of the MPC benchmark. Runs in its own venv (README), never in privlab's.

Usage: /tmp/spu-venv/bin/python benchmarks/mpc/spu_side.py MODEL X.npy W.npz REF.npy
           [--fxp 18] [--beaver TrustedFirstParty]
Prints one JSON line: seconds, rounds, bytes (sum over both parties), per-party link counters,
per-kernel counters, argmax agreement with torch's plaintext logits (REF.npy, written by run.py).

The model (``spu_models``, a JAX port of the torch module checked against REF.npy first) is
compiled by SPU's JAX frontend with the image batch *and every weight* as secret inputs, and run
by two ``spu.api.Runtime`` parties (SEMI2K, ring Z/2^64 = ``FM64``, ``fxp`` fractional bits) in
two threads over SPU's in-memory link, like ``spu.utils.simulation.Simulator`` but with the
profile switched on for both parties. Input shares are made by ``spu.api.Io`` before the run
(no traffic, like privlab's seeded input shares).

Counters: SPU 0.9.5 exposes no link statistics in Python; with ``enable_pphlo_profile`` and
``enable_hal_profile`` each party's runtime logs ``Link details: total send bytes B, recv bytes
B', send actions A, recv actions A'`` and one line per kernel (``- mmul_aa, executed n times, ...
send bytes ..., send actions ...``). This script captures that log (file descriptor 1) and parses
it. ``bytes`` is the sum of both parties' send bytes; ``rounds`` is the larger of the two
parties' send actions (SEMI2K opens are symmetric, one message per party per round, so this is the
number of sequential message exchanges; it would overcount a round in which one party sends two
messages). The logits are revealed inside the program (``spu.experimental.reveal``), so the
final opening is counted, as privlab counts its reveal.

Beaver triples: ``TrustedFirstParty`` (default) has party 0 derive every party's share of the
correlated randomness from PRG seeds fixed at set-up, so triples cost **no** traffic; SPU's
alternative ``TrustedThirdParty`` needs its separate beaver server (not shipped in the wheel) and
its traffic would not appear in the link counters either.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spu
import spu.api as spu_api
import spu.libspu as libspu
import spu.utils.frontend as spu_fe
from spu.experimental import reveal
from spu_models import MODELS

LINK = re.compile(
    r"Link details: total send bytes (\d+), recv bytes (\d+), "
    r"send actions (\d+), recv actions (\d+)"
)
KERNEL = re.compile(
    r"\] - (\S+), executed (\d+) times, duration ([\d.e+-]+)s, send bytes (\d+) "
    r"recv bytes (\d+), send actions (\d+), recv actions (\d+)"
)


def runtime_config(fxp: int, beaver: str) -> libspu.RuntimeConfig:
    cfg = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.SEMI2K, field=libspu.FieldType.FM64)
    cfg.fxp_fraction_bits = fxp
    cfg.beaver_type = getattr(libspu.RuntimeConfig.BeaverType, beaver)
    cfg.enable_pphlo_profile = True
    cfg.enable_hal_profile = True
    return cfg


HAL_PREFIXES = ("f_", "i_", "mixed_", "_")  # fixed-point / integer / mixed / internal (_mux) HAL kernels
HAL_NAMES = {"reveal"}


def is_mpc_kernel(name: str) -> bool:
    """Whether a profiled kernel name is an MPC kernel (``mmul_aa``, ``msb_a2b``, ``a2p`` ...).

    Both parties print their HLO, HAL and MPC sections at the same moment from two threads, so the
    lines of the two logs interleave and a kernel can land under the other party's section header;
    the layer is therefore read from the name: ``pphlo.*`` is HLO, ``f_*`` / ``i_*`` / ``mixed_*``
    ``_*`` (``_mux``) and ``reveal`` are HAL. The link-total check below catches a name this rule gets wrong.
    """
    return not (name.startswith("pphlo.") or name.startswith(HAL_PREFIXES) or name in HAL_NAMES)


def parse_log(text: str) -> dict[str, Any]:
    """Per-party link totals and per-MPC-kernel counters (summed over parties) from SPU's log."""
    links = [tuple(int(v) for v in m.groups()) for m in LINK.finditer(text)]
    if len(links) != 2:
        raise RuntimeError(f"expected 2 'Link details' lines (one per party), found {len(links)}")
    kernels: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        k = KERNEL.search(line)
        if k and is_mpc_kernel(k.group(1)):
            row = kernels.setdefault(k.group(1), {"calls": 0, "bytes": 0, "send_actions": 0})
            row["calls"] = max(row["calls"], int(k.group(2)))
            row["bytes"] += int(k.group(4))
            row["send_actions"] = max(row["send_actions"], int(k.group(6)))
    total = sum(b for b, _, _, _ in links)
    ksum = sum(int(k["bytes"]) for k in kernels.values())
    if ksum != total:  # every byte is in one MPC kernel
        raise RuntimeError(
            f"SPU log: per-kernel send bytes ({ksum}) do not add up to the link total {total}; kernels: "
            + ", ".join(f"{n} {int(k['bytes'])}" for n, k in sorted(kernels.items()))
        )
    return {
        "parties": [
            {"send_bytes": b, "recv_bytes": rb, "send_actions": a, "recv_actions": ra} for b, rb, a, ra in links
        ],
        "per_kernel": kernels,
    }


class _Party(threading.Thread):
    """One SPU party: its own runtime on the shared in-memory link; re-raises in ``join``."""

    def __init__(self, rank: int, desc: Any, cfg: Any, exe: Any, shares: list[Any]) -> None:
        super().__init__()
        self.rank, self.desc, self.cfg, self.exe, self.shares = rank, desc, cfg, exe, shares
        self.exc: BaseException | None = None
        self.seconds = 0.0
        self.out: list[Any] = []

    def run(self) -> None:
        try:
            rt = spu_api.Runtime(libspu.link.create_mem(self.desc, self.rank), self.cfg)
            for name, share in zip(self.exe.input_names, self.shares, strict=True):
                rt.set_var(name, share[self.rank])
            t0 = time.perf_counter()
            rt.run(self.exe)
            self.seconds = time.perf_counter() - t0
            self.out = [rt.get_var(n) for n in self.exe.output_names]
        except BaseException as e:
            self.exc = e

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.exc is not None:
            raise self.exc


def run_program(
    program: Callable[..., Any], args: tuple[Any, ...], cfg: libspu.RuntimeConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Compile ``program`` with every leaf of ``args`` secret, run it on two SEMI2K parties.

    Returns the reconstructed first output and the run's figures: ``seconds`` (the slower
    party's ``Runtime.run``), ``compile_seconds``, ``rounds`` (max send actions), ``bytes`` (both
    parties' send bytes), ``link`` (per party) and ``per_kernel`` (from the captured SPU log)."""
    flat, _ = jax.tree_util.tree_flatten(args)
    secret = libspu.Visibility.VIS_SECRET
    with tempfile.TemporaryFile(mode="w+b") as log:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)  # SPU's C++ logger writes to file descriptor 1
        try:
            t0 = time.perf_counter()
            exe, _ = spu_fe.compile(
                spu_fe.Kind.JAX,
                program,
                args,
                {},
                [f"in{i}" for i in range(len(flat))],
                [secret] * len(flat),
                lambda out: [f"out{i}" for i in range(len(out))],
            )
            compile_seconds = time.perf_counter() - t0
            io = spu_api.Io(2, cfg)
            shares = [io.make_shares(np.asarray(a), secret) for a in flat]
            desc = libspu.link.Desc()
            for rank in range(2):
                desc.add_party(f"party{rank}", f"thread_{rank}")
            parties = [_Party(rank, desc, cfg, exe, shares) for rank in range(2)]
            for p in parties:
                p.start()
            for p in parties:
                p.join()
            out = np.asarray(io.reconstruct([p.out[0] for p in parties]))
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        stats = parse_log(log.read().decode("utf-8", "replace"))
    link = stats["parties"]
    return out, {
        "seconds": max(p.seconds for p in parties),
        "party_seconds": [p.seconds for p in parties],
        "compile_seconds": compile_seconds,
        "rounds": max(q["send_actions"] for q in link),
        "bytes": sum(q["send_bytes"] for q in link),
        "link": link,
        "per_kernel": stats["per_kernel"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("x", help="input batch [B, 1, 28, 28] float32 (.npy)")
    ap.add_argument("weights", help="torch state_dict as numpy arrays (.npz)")
    ap.add_argument("ref", help="torch plaintext logits [B, 10] (.npy)")
    ap.add_argument("--fxp", type=int, default=18, help="fixed-point fraction bits (FM64 default)")
    ap.add_argument("--beaver", default="TrustedFirstParty", choices=["TrustedFirstParty", "TrustedThirdParty"])
    a = ap.parse_args()
    x = np.load(a.x).astype(np.float32)
    params = {k: v.astype(np.float32) for k, v in np.load(a.weights).items()}
    ref = np.load(a.ref).astype(np.float64)
    port = np.asarray(jax.jit(MODELS[a.model])(jnp.asarray(x), params), dtype=np.float64)
    port_err = float(np.abs(port - ref).max())
    if port_err > 1e-3:
        raise SystemExit(f"spu side: JAX port of {a.model!r} differs from torch by {port_err:.3g}")
    model = MODELS[a.model]

    def program(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
        return reveal(model(x, p))  # the final opening is counted, as privlab counts its reveal

    out, figures = run_program(program, (x, params), runtime_config(a.fxp, a.beaver))
    print(
        json.dumps(
            {
                "model": a.model,
                **figures,
                "dealer_bytes": 0,
                "argmax_agreement": float((out.argmax(-1) == ref.argmax(-1)).mean()),
                "max_abs_error": float(np.abs(out - ref).max()),
                "port_max_abs_error": port_err,
                "config": {
                    "protocol": "SEMI2K",
                    "field": "FM64",
                    "fxp_fraction_bits": a.fxp,
                    "beaver_type": a.beaver,
                    "parties": 2,
                    "weights": "secret",
                    "input": "secret",
                },
                "spu": spu.__version__,
                "jax": jax.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
