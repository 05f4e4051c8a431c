"""One call for private inference of a torch module: the model owner (party 0) holds the module,
the data owner (party 1) holds the input and alone learns the output."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from privlab._validation import check_choice
from privlab.mpc.config import MPCConfig
from privlab.mpc.interpreter import run_program
from privlab.mpc.launch import RunResult, run_local
from privlab.mpc.model import compile_model
from privlab.mpc.party import Party
from privlab.mpc.stats import CommStats


@dataclass(frozen=True)
class InferenceResult:
    """Revealed output (data owner's view), plaintext output, agreement and cost."""

    output: torch.Tensor
    plaintext: torch.Tensor
    max_abs_error: float
    argmax_agreement: float
    stats: CommStats
    seconds: float


def infer_task(
    party: Party, module: nn.Module, input_shape: tuple[int, ...], x: torch.Tensor | None
) -> torch.Tensor | None:
    """What each party runs. The data owner's copy of the module has its weights zeroed: it needs
    only the architecture, which shows the weights reach it only as shares."""
    if party.rank != 0:
        module = copy.deepcopy(module)
        with torch.no_grad():
            for prm in module.parameters():
                prm.zero_()
    pm = compile_model(module, input_shape)  # refuses unsupported layers before any traffic
    party.mark_start()  # time the protocol, not tracing (CrypTen's timing excludes its set-up)
    return run_program(party, pm, x)


def private_inference(
    module: nn.Module,
    x: torch.Tensor,
    config: MPCConfig | None = None,
    transport: str = "local",
    reimport_main: bool = True,
) -> InferenceResult:
    """Run ``module(x)`` on secret shares with two parties and a dealer, and compare with
    plaintext. ``transport``: ``"local"`` (threads) or ``"gloo"`` (three processes on this host;
    ``reimport_main=False`` when ``module``'s class does not live in ``__main__``).
    """
    check_choice(transport, "transport", "private_inference", ("local", "gloo"))
    module = module.eval()
    compile_model(module, x.shape)  # fail fast, before any party starts
    args = ((module, tuple(x.shape), None), (module, tuple(x.shape), x))
    if transport == "local":
        res: RunResult = run_local(infer_task, args, config)
    else:
        from privlab.mpc.distributed import run_processes

        res = run_processes(infer_task, args, config, reimport_main=reimport_main)
    out = res.outputs[1]
    with torch.no_grad():
        ref = module(x).double()
    agree = float((out.argmax(-1) == ref.argmax(-1)).double().mean()) if out.dim() > 1 else 1.0
    return InferenceResult(out, ref, float((out - ref).abs().max()), agree, res.stats, res.seconds)
