"""One call for private inference of a torch module: the model owner (party 0) holds the module,
the data owner (party 1) holds the input and alone learns the output."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from privlab._validation import check_choice
from privlab.errors import MPCRangeError
from privlab.mpc.bounds import RangeReport, check_ranges, default_input_range
from privlab.mpc.config import MPCConfig
from privlab.mpc.handshake import agrees_on
from privlab.mpc.interpreter import run_program
from privlab.mpc.launch import RunResult, run_local
from privlab.mpc.model import PrivateModel, compile_model
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
    input_range: tuple[float, float] = (0.0, 0.0)
    ranges: RangeReport | None = None


def check_input(x: torch.Tensor, input_range: tuple[float, float]) -> None:
    """The data owner's plaintext check that its input lies in the range it declares."""
    lo, hi = input_range
    if x.numel() and not (float(x.min()) >= lo and float(x.max()) <= hi):
        raise MPCRangeError(
            f"The 'input_range' parameter of private_inference must contain every input value. Got "
            f"{input_range!r}, but the input spans [{float(x.min()):g}, {float(x.max()):g}]."
        )


def _agree_range(party: Party, pm: PrivateModel, x: torch.Tensor | None) -> None:
    """Set-up when no range was given (e.g. one host per party): the data owner declares the
    default range of its data (:func:`default_input_range`, 16 bytes), the model owner proves it
    over its weights and answers with a verdict (8 bytes: 0, or 1 + the index of the refused node).
    Both refuse with ``MPCRangeError`` on a bad verdict. Not counted in the protocol's rounds, like
    the seed exchange."""
    t = party.transport
    names = [n.name for n in pm.graph_module.graph.nodes]
    if party.rank == 1:
        if x is None:
            raise MPCRangeError("The data owner needs its input to declare an input range. Got None instead.")
        rng = default_input_range(x)
        t.send(0, torch.tensor(rng, dtype=torch.float64).view(torch.uint8))
        verdict = int(t.recv(0, 8).view(torch.int64)[0])
        if verdict:
            raise MPCRangeError(
                f"privlab.mpc: the model owner refused layer at node '{names[verdict - 1]}': with inputs in "
                f"[{rng[0]:g}, {rng[1]:g}] its weights would leave the ring or an operation's valid range."
            )
        return
    rng_t = t.recv(1, 16).view(torch.float64)
    rng = (float(rng_t[0]), float(rng_t[1]))
    try:
        check_ranges(pm, rng, party.config)
    except MPCRangeError as exc:
        bad = _refused_node(pm, str(exc))
        t.send(1, torch.tensor([bad], dtype=torch.int64).view(torch.uint8))
        t.close()
        raise
    t.send(1, torch.tensor([0], dtype=torch.int64).view(torch.uint8))


def _refused_node(pm: PrivateModel, message: str) -> int:
    for i, n in enumerate(pm.graph_module.graph.nodes):
        if f"layer '{n.target if n.op == 'call_module' else n.name}'" in message:
            return i + 1
    return len(list(pm.graph_module.graph.nodes))


def _inference_arguments(
    module: nn.Module, input_shape: tuple[int, ...], x: Any, input_range: tuple[float, float] | None = None
) -> dict[str, Any]:
    """What both parties must agree on besides the architecture (the CLI's fingerprint): the input
    shape and the declared range the model owner proves (a range the data owner did not check
    would let its input leave the proven one)."""
    return {"input_shape": [int(s) for s in input_shape],
            "input_range": None if input_range is None else [float(v) for v in input_range]}


def architecture_only(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every parameter and buffer zeroed: what the data owner receives
    (in its process, over gloo), so the model owner's weights reach it only as shares."""
    out = copy.deepcopy(module)
    with torch.no_grad():
        for t in [*out.parameters(), *out.buffers()]:
            if t.is_floating_point():
                t.zero_()
    return out


@agrees_on(_inference_arguments)
def infer_task(
    party: Party,
    module: nn.Module,
    input_shape: tuple[int, ...],
    x: torch.Tensor | None,
    input_range: tuple[float, float] | None = None,
) -> torch.Tensor | None:
    """What each party runs. The data owner's copy of the module has its weights zeroed: it needs
    only the architecture, which shows the weights reach it only as shares.

    Ranges: with ``input_range`` (public, agreed by both), the model owner proves it over its
    weights (:func:`~privlab.mpc.bounds.check_ranges`) and the data owner checks its input lies in
    it; without one, the parties agree on the data owner's default range first
    (:func:`_agree_range`). Either way the protocol then runs without runtime range checks."""
    if party.rank != 0:
        module = architecture_only(module)
    pm = compile_model(module, input_shape)  # refuses unsupported layers before any traffic
    if input_range is None:
        _agree_range(party, pm, x)
    elif party.rank == 0:
        check_ranges(pm, input_range, party.config)
    elif x is not None:
        check_input(x, input_range)
    party.range_checks = False  # proven in plaintext: the runtime checks would be redundant
    party.mark_start()  # time the protocol, not tracing (CrypTen's timing excludes its set-up)
    return run_program(party, pm, x)


def private_inference(
    module: nn.Module,
    x: torch.Tensor,
    config: MPCConfig | None = None,
    transport: str = "local",
    reimport_main: bool = True,
    input_range: tuple[float, float] | None = None,
) -> InferenceResult:
    """Run ``module(x)`` on secret shares with two parties and a dealer, and compare with
    plaintext. ``transport``: ``"local"`` (threads) or ``"gloo"`` (three processes on this host;
    ``reimport_main=False`` when ``module``'s class does not live in ``__main__``).

    ``input_range=(low, high)``: the declared (public) range of every input value. Default:
    :func:`~privlab.mpc.bounds.default_input_range` of ``x`` (``[0, b]`` or ``[-b, b]`` with
    ``b`` the power of two above ``max |x|``). Before any party starts, ``x`` must lie in it and
    the model's weights must keep every layer inside the ring and every operation inside its
    valid domain for *all* inputs in it (plaintext interval bounds,
    :func:`~privlab.mpc.bounds.check_ranges`); otherwise ``MPCRangeError`` names the layer.
    ``config.timeout`` is the per-message limit, ``config.deadline`` the whole-run limit.
    """
    check_choice(transport, "transport", "private_inference", ("local", "gloo"))
    module = module.eval()
    pm = compile_model(module, x.shape)  # fail fast, before any party starts
    config = config or MPCConfig()
    rng = default_input_range(x) if input_range is None else input_range
    report = check_ranges(pm, rng, config)  # raises naming the layer
    rng = report.input_range
    check_input(x, rng)
    config = dataclasses.replace(config, range_checks=False)
    args = ((module, tuple(x.shape), None, rng), (architecture_only(module), tuple(x.shape), x, rng))
    if transport == "local":
        res: RunResult = run_local(infer_task, args, config)
    else:
        from privlab.mpc.distributed import run_processes

        res = run_processes(infer_task, args, config, reimport_main=reimport_main)
    out = res.outputs[1]
    with torch.no_grad():
        ref = module(x).double()
    agree = float((out.argmax(-1) == ref.argmax(-1)).double().mean()) if out.dim() > 1 else 1.0
    return InferenceResult(out, ref, float((out - ref).abs().max()), agree, res.stats, res.seconds, rng, report)
