"""Secure multi-party computation: private inference and training on secret shares."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path

import torch
import typer

from privlab.cli.errors import cli_errors
from privlab.errors import InvalidParameterError
from privlab.mpc.config import MPCConfig
from privlab.mpc.demos import DEMOS, demo_model
from privlab.mpc.model import PrivateModel, compile_model

app = typer.Typer(no_args_is_help=True, help=__doc__)


def _load(model: str, weights: Path | None) -> torch.nn.Module:
    if model in DEMOS:
        module = demo_model(model)
    else:
        mod_name, _, attr = model.partition(":")
        if not attr:
            raise typer.BadParameter(
                f"--model must be one of {sorted(DEMOS)} or 'package.module:factory'. Got {model!r} instead."
            )
        module = getattr(importlib.import_module(mod_name), attr)()
    if weights is not None:
        try:
            module.load_state_dict(torch.load(weights, weights_only=True))
        except Exception as exc:  # missing or corrupted file, or another model's state_dict
            raise typer.BadParameter(
                f"--weights {str(weights)!r} is not a state_dict of --model {model!r}: {exc}"
            ) from None
    return module.eval()


def _config(timeout: float, cmp_bits: int, cmp_tree: str) -> MPCConfig:
    """The run's MPCConfig from the command line; bad values are refused with the option named."""
    try:
        tree = tuple(int(k) for k in cmp_tree.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"--cmp-tree must be comma-separated fan-ins such as 2,2,3. Got {cmp_tree!r} instead."
        ) from None
    try:
        return MPCConfig(timeout=timeout, cmp_bits=cmp_bits, cmp_tree=tree)
    except InvalidParameterError as err:
        raise typer.BadParameter(str(err)) from None


TRANSPORTS = ("gloo", "local")


def _transport(transport: str) -> str:
    if transport not in TRANSPORTS:
        raise typer.BadParameter(f"--transport must be one of {list(TRANSPORTS)}. Got {transport!r} instead.")
    return transport


def model_fingerprint(pm: PrivateModel) -> str:
    """A digest of everything about a compiled model the parties must agree on, and nothing secret.

    Hashed: the traced program the engine runs (``graph_module.code``, which holds the forward's
    operations and its Python constants, e.g. a ``self.scale = 0.5`` used in ``forward``), every
    submodule's type and hyper-parameters (``extra_repr`` and its plain attributes: kernel sizes,
    ``eps``, ``dim``...), the name, shape and dtype of every parameter and buffer, and the value of
    any non-tensor attribute the graph reads. Not hashed: tensor values (weights, buffers, tensor
    constants), which the engine secret-shares from the model owner: they are its secret, and the
    digest is sent to the other hosts.
    """
    gm = pm.graph_module
    parts = [gm.code, f"input_shape={list(pm.input_shape)}"]
    for name, mod in gm.named_modules():
        if name:  # the root is the traced program itself, in gm.code
            plain = sorted((k, repr(v)) for k, v in vars(mod).items() if not k.startswith("_") and _plain(v))
            parts.append(f"module {name}: {type(mod).__module__}.{type(mod).__qualname__}({mod.extra_repr()}) {plain}")
    for name, t in [*gm.named_parameters(), *gm.named_buffers()]:
        parts.append(f"tensor {name}: {tuple(t.shape)} {t.dtype}")  # shapes and dtypes only: values are secret
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value: object = gm
            for attr in str(node.target).split("."):
                value = getattr(value, attr)
            if not isinstance(value, torch.Tensor):
                parts.append(f"attr {node.target}: {value!r}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _plain(value: object) -> bool:
    """A hyper-parameter-like value: a Python scalar, string or None, or a tuple/list of them (never a tensor)."""
    if isinstance(value, tuple | list):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def _env_int(name: str, flag: str, low: int, high: int) -> int:
    """An int from the environment variable ``name`` (the fallback of ``flag``), with a named error."""
    text = os.environ.get(name)
    if text is None:
        raise InvalidParameterError(f"{flag} is not given and the {name} environment variable is not set.")
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise InvalidParameterError(
            f"The {name} environment variable (used without {flag}) must be an int in the range "
            f"[{low}, {high}]. Got {text!r} instead."
        )
    return value


CMP_BITS = typer.Option(MPCConfig.cmp_bits, help="Comparison width: exact for |x| < 2^(cmp_bits-17).")
CMP_TREE = typer.Option(
    ",".join(map(str, MPCConfig.cmp_tree)),
    help="Comparison tree fan-ins, leaves first: 2,2,3 (fewest dealer bytes), 2,2,2 (fewest party bytes), "
    "3,3 or 3,4 (one round fewer per comparison).",
)


@app.command("run")
def run(
    model: str = typer.Option("cnn", help="Demo model (mlp, cnn, transformer) or 'pkg.mod:factory'."),
    weights: Path | None = typer.Option(None, help="A state_dict file (torch.save) to load."),
    input_shape: str = typer.Option("1,28,28", help="Per-example input shape."),
    batch: int = typer.Option(8, min=1, help="Batch size of the random input."),
    transport: str = typer.Option("gloo", help="'gloo' (3 processes) or 'local' (threads)."),
    timeout: float = typer.Option(60.0, help="Seconds before a silent peer is an error."),
    cmp_bits: int = CMP_BITS,
    cmp_tree: str = CMP_TREE,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Launch both parties and the dealer on this host and run one private inference."""
    from privlab.mpc.inference import private_inference

    transport = _transport(transport)
    module = _load(model, weights)
    shape = (batch, *_shape(input_shape))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    config = _config(timeout, cmp_bits, cmp_tree)
    with cli_errors():  # an unsupported layer, an out-of-range input or a dead party: "error: ...", exit 2
        res = private_inference(module, x, config, transport, reimport_main=False)
    row = {
        "model": model,
        "transport": transport,
        "batch": batch,
        "cmp_bits": cmp_bits,
        "cmp_tree": list(config.cmp_tree),
        "seconds": round(res.seconds, 3),
        "rounds": res.stats.rounds,
        "bytes": res.stats.bytes,
        "dealer_bytes": res.stats.dealer_bytes,
        "max_abs_error": res.max_abs_error,
        "argmax_agreement": res.argmax_agreement,
    }
    if as_json:
        typer.echo(json.dumps(row))
        return
    for k, v in row.items():
        typer.echo(f"{k:<17} {v}")


@app.command("party")
def party(
    rank: int | None = typer.Option(None, min=0, max=2, help="0 model owner, 1 data owner, 2 dealer (env RANK)."),
    addr: str | None = typer.Option(None, help="Rendezvous address (env MASTER_ADDR)."),
    port: int | None = typer.Option(None, min=1, max=65535, help="Rendezvous port (env MASTER_PORT, else 29500)."),
    model: str = typer.Option("cnn", help="Demo model or 'pkg.mod:factory' (same on all hosts)."),
    weights: Path | None = typer.Option(None, help="Model owner (rank 0): a state_dict file (torch.save) to load."),
    input_shape: str = typer.Option("1,28,28", help="Per-example input shape (same on all hosts)."),
    batch: int = typer.Option(8, min=1, help="Batch size (same on all hosts)."),
    input_file: Path | None = typer.Option(
        None, "--input", help="Data owner (rank 1): a tensor file (torch.save) of shape (batch, *input-shape); "
        "random inputs without it."
    ),
    output: Path | None = typer.Option(None, help="Data owner (rank 1): save the revealed logits here (torch.save)."),
    timeout: float = typer.Option(60.0, help="Seconds before a silent peer is an error."),
    cmp_bits: int = CMP_BITS,
    cmp_tree: str = CMP_TREE,
) -> None:
    """Run one role of a multi-host run (start one per host: ranks 0, 1 and 2). The hosts first
    check that they agree on the privlab version, the comparison options, the model and the input
    shape, and stop at once, naming what differs, if they do not. Only the model owner reads
    ``--weights`` and only the data owner reads ``--input`` and writes ``--output``."""
    from privlab.mpc.distributed import run_party
    from privlab.mpc.inference import infer_task

    with cli_errors():  # a bad environment variable or an unsupported layer: "error: ..." and exit status 2
        rank = _env_int("RANK", "--rank", 0, 2) if rank is None else rank
        if port is None and "MASTER_PORT" in os.environ:
            port = _env_int("MASTER_PORT", "--port", 1, 65535)
        world = os.environ.get("WORLD_SIZE", "3")
        if world.strip() != "3":
            raise InvalidParameterError(
                f"The WORLD_SIZE environment variable must be 3 (two parties and the dealer). Got {world!r} instead."
            )
    config = _config(timeout, cmp_bits, cmp_tree)
    module = _load(model, weights if rank == 0 else None)
    shape = (batch, *_shape(input_shape))
    x = _party_input(input_file, shape) if rank == 1 else None
    with cli_errors():
        architecture = model_fingerprint(compile_model(module, shape))  # public, and no weight enters it
    public = {"model": model, "input_shape": list(shape), "architecture": architecture}
    with cli_errors():  # a refused handshake or a dead peer: "error: ..." and exit status 2
        res = run_party(rank, infer_task, (module, shape, x), config, addr, port, public)
    if res is None:
        typer.echo("dealer finished")
        return
    out, stats, seconds = res
    if out is not None and output is not None:
        torch.save(out, output)
    typer.echo(
        json.dumps(
            {
                "rank": rank,
                "seconds": round(seconds, 3),
                "rounds": stats.rounds,
                "bytes_sent": stats.bytes,
                "dealer_bytes": stats.dealer_bytes,
                "prediction": None if out is None else out.argmax(-1).tolist(),
                "output": None if out is None or output is None else str(output),
            }
        )
    )


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(s) for s in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise typer.BadParameter(f"--input-shape must be comma-separated positive sizes such as 1,28,28. Got {text!r}.")
    return dims


def _party_input(path: Path | None, shape: tuple[int, ...]) -> torch.Tensor:
    """The data owner's input: the tensor in ``path`` (checked against the agreed shape), or random."""
    if path is None:
        return torch.rand(shape, generator=torch.Generator().manual_seed(0))
    try:
        x = torch.load(path, weights_only=True)
    except Exception as exc:  # missing, truncated or not a torch file
        raise typer.BadParameter(f"--input {str(path)!r} is not a readable tensor file ({exc})") from None
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != shape or not x.is_floating_point():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise typer.BadParameter(
            f"--input must hold one floating-point tensor of shape {shape} (--batch, --input-shape). Got {got}."
        )
    return x


@app.command("train")
def train(
    n: int = typer.Option(400, min=2, help="Synthetic examples (held by the data owner)."),
    d: int = typer.Option(5, min=1, help="Features."),
    epochs: int = typer.Option(3, min=1),
    batch_size: int = typer.Option(40, min=1),
    lr: float = typer.Option(0.5, min=0.0),
    transport: str = typer.Option("local", help="'local' (threads) or 'gloo' (3 processes)."),
    timeout: float = typer.Option(60.0, help="Seconds before a silent peer is an error."),
) -> None:
    """Train a logistic regression on secret-shared synthetic data and compare with plaintext."""
    from privlab.mpc.launch import run_local
    from privlab.mpc.train import LogRegConfig, train_logreg

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (
        (x @ torch.randn(d, generator=g, dtype=torch.float64) + 0.3 * torch.randn(n, generator=g, dtype=torch.float64))
        > 0
    ).double()
    transport = _transport(transport)
    with cli_errors():  # a bad --lr or --timeout, or a dead party: "error: ..." and exit status 2
        cfg = LogRegConfig(epochs=epochs, batch_size=batch_size, lr=lr)
        config = MPCConfig(timeout=timeout)
        args = ((None, None, (n, d), cfg), (x, y, (n, d), cfg))
        if transport == "gloo":
            from privlab.mpc.distributed import run_processes

            res = run_processes(train_logreg, args, config, reimport_main=False)
        else:
            res = run_local(train_logreg, args, config)
    model = res.outputs[1]
    acc = float(((model.predict_proba(x) > 0.5).double() == y).double().mean())
    typer.echo(
        json.dumps(
            {
                "accuracy": acc,
                "seconds": round(res.seconds, 3),
                "rounds": res.stats.rounds,
                "bytes": res.stats.bytes,
                "dealer_bytes": res.stats.dealer_bytes,
            }
        )
    )
