"""CrypTen 0.4.1 side of the MPC benchmark. Runs in its own venv (see README), never in privlab's.

Usage: /tmp/crypten-venv/bin/python benchmarks/mpc/crypten_side.py MODEL BATCH SEED [X.pt W.pt]
Prints one JSON line: seconds, rounds, bytes (sum over both parties), dealer bytes, agreement.
Architectures are rebuilt here with the same constructors and seed as privlab.mpc.demos.
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn as nn


def _shim() -> None:
    """CrypTen 0.4.1 on torch >= 2.9: the ONNX registration module moved; dynamo export is new."""
    import torch.onnx._internal.torchscript_exporter.registration as registration

    sys.modules["torch.onnx._internal.registration"] = registration
    torch.onnx._internal.registration = registration  # type: ignore[attr-defined]
    export = torch.onnx.export

    def export_legacy(*args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("dynamo", False)
        return export(*args, **kwargs)

    torch.onnx.export = export_legacy  # type: ignore[assignment]


def build(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                             nn.ReLU(), nn.Linear(1024, 10)).eval()
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 16, 5), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 100), nn.ReLU(),
            nn.Linear(100, 10)).eval()
    raise SystemExit(f"crypten side: model {name!r} not supported (no attention/LayerNorm)")


def main() -> None:
    name, batch, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    _shim()
    import crypten
    import crypten.mpc as mpc

    crypten.cfg.mpc.provider = "TTP"
    crypten.cfg.communicator.verbose = True
    model = build(name, seed)
    x = torch.load(sys.argv[4]) if len(sys.argv) > 4 else torch.rand(batch, 1, 28, 28)
    if len(sys.argv) > 5:
        model.load_state_dict(torch.load(sys.argv[5]))

    @mpc.run_multiprocess(world_size=2)
    def party():  # type: ignore[no-untyped-def]
        torch.set_num_threads(1)
        comm = crypten.communicator.get()
        enc_model = crypten.nn.from_pytorch(model, torch.empty(1, 1, 28, 28))
        enc_model.encrypt(src=0)
        enc_model.eval()
        x_enc = crypten.cryptensor(x if comm.get_rank() == 1 else torch.empty_like(x), src=1)
        comm.reset_communication_stats()
        start = time.perf_counter()
        out = enc_model(x_enc).get_plain_text(dst=1)
        seconds = time.perf_counter() - start
        stats = comm.get_communication_stats()
        return {"seconds": seconds, "rounds": stats["rounds"], "bytes": stats["bytes"],
                "out": out.tolist() if comm.get_rank() == 1 else None}

    t0 = time.perf_counter()
    res = party()
    if res is None:
        raise SystemExit("crypten side: a party failed")
    with torch.no_grad():
        ref = model(x)
    out = torch.tensor(res[1]["out"])
    agree = float((out.argmax(-1) == ref.argmax(-1)).float().mean())
    print(json.dumps({
        "model": name, "seconds": max(r["seconds"] for r in res), "rounds": res[0]["rounds"],
        "bytes": sum(r["bytes"] for r in res[:2]), "dealer_bytes": None,
        "argmax_agreement": agree, "max_abs_error": float((out - ref).abs().max()),
        "launch_seconds": time.perf_counter() - t0, "crypten": crypten.__version__
        if hasattr(crypten, "__version__") else "0.4.1",
    }))


if __name__ == "__main__":
    main()
