"""The first message of every multi-process run: each rank states what the ranks must agree on.

Two hosts that disagree on the protocol (another privlab version, another comparison tree, another
fixed-point precision, another model) would exchange messages of different sizes or meanings; over
gloo that reads as a silent peer and surfaces only at ``MPCConfig.timeout``. So before the seeds,
every rank sends the two others a fixed-size statement of its **agreement fields** and refuses to
go on, on every rank and at once, if any field differs: the error names the field and each
rank's value.

The statement holds public facts only: the privlab version and wire protocol, the
``MPCConfig`` fields that shape messages (``frac_bits``, ``cmp_bits``, ``cmp_tree``,
``range_checks``), and, from the parties, the task's name and whatever public facts the caller
adds (the CLI adds the model name, the input shape and a digest of the module's architecture,
which both parties hold anyway), and the task's own public arguments, which a task declares with
:func:`agrees_on` (``train_logreg``: the data shape and ``LogRegConfig``, seed included;
``infer_task``: the input shape and range). ``timeout`` and ``deadline`` are each host's own limits
and are not compared. Every rank must state the built-in fields, and the two parties every field
either states; the dealer runs no task and states only the built-ins. A field missing from a
statement is a disagreement, not a pass.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

import privlab
from privlab.errors import MPCError
from privlab.mpc.config import MPCConfig
from privlab.mpc.transport.gloo import DEALER_RANK, Heartbeat, wait_work
from privlab.mpc.transport.limits import Limits

WIRE_PROTOCOL = 2  # raise when a message's layout changes (2: comparison trees of any fan-in)
STATEMENT_BYTES = 1024  # fixed, so each rank posts its receives before it knows the peers' lengths
_LONG = 64  # longer public values travel as a digest, so the statement stays under its size


BUILT_IN = ("privlab", "wire_protocol", "frac_bits", "cmp_bits", "cmp_tree", "range_checks")
_F = TypeVar("_F", bound=Callable[..., Any])


def agrees_on(fields: Callable[..., dict[str, Any]]) -> Callable[[_F], _F]:
    """Declare the public arguments of a party function that both parties must share:
    ``fields(*args)`` (the function's arguments after ``party``) returns them as JSON values; the
    handshake compares them as ``task.<name>``. Secret arguments (a party's own data) must not be in it."""

    def mark(fn: _F) -> _F:
        fn.__mpc_agreement__ = fields  # type: ignore[attr-defined]
        return fn

    return mark


def task_fields(fn: Callable[..., Any] | None, args: tuple[Any, ...]) -> dict[str, Any]:
    """The ``task.*`` agreement fields of ``fn`` called with ``args`` (none if it declares none)."""
    fields = getattr(fn, "__mpc_agreement__", None)
    return {} if fields is None else {f"task.{k}": v for k, v in fields(*args).items()}


def _short(value: Any) -> Any:
    text = json.dumps(value, sort_keys=True)
    return value if len(text) <= _LONG else "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def statement(config: MPCConfig, task: str | None = None, public: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields this rank must agree on with the others (public facts only, see the module)."""
    out: dict[str, Any] = {
        "privlab": privlab.__version__,
        "wire_protocol": WIRE_PROTOCOL,
        "frac_bits": config.frac_bits,
        "cmp_bits": config.cmp_bits,
        "cmp_tree": list(config.cmp_tree),
        "range_checks": config.range_checks,
    }
    if task is not None:
        out["task"] = task
    for key, value in (public or {}).items():
        if key in out:
            raise MPCError(f"public agreement field {key!r} clashes with a built-in field; rename it")
        out[key] = _short(value)
    return json.loads(json.dumps(out))  # as a peer will decode it (tuples become lists)


def encode(fields: dict[str, Any]) -> torch.Tensor:
    """A statement as a zero-padded ``STATEMENT_BYTES`` uint8 buffer."""
    raw = json.dumps(fields, sort_keys=True).encode()
    if len(raw) > STATEMENT_BYTES:
        raise MPCError(
            f"agreement statement is {len(raw)} bytes, more than {STATEMENT_BYTES}; shorten the public fields"
        )
    buf = torch.zeros(STATEMENT_BYTES, dtype=torch.uint8)
    buf[: len(raw)] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return buf


def decode(buf: torch.Tensor, src: int) -> dict[str, Any]:
    """A peer's statement; a buffer that is not one (a peer on a privlab without the handshake)
    is an error that says so."""
    raw = bytes(buf.tolist()).rstrip(b"\0")
    try:
        fields = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        fields = None
    if not isinstance(fields, dict):
        raise MPCError(
            f"rank {src} did not open the run with an agreement statement: it runs a privlab without the "
            f"start-of-run handshake (this rank runs privlab {privlab.__version__}); install the same privlab "
            "on every host"
        )
    return fields


def disagreements(mine: dict[str, Any], rank: int, theirs: dict[int, dict[str, Any]]) -> list[str]:
    """One line per field on which a peer differs from this rank, or that one of them does not state
    (the built-ins for every pair of ranks; every field between the two parties)."""
    lines = []
    for src, other in sorted(theirs.items()):
        keys = set(BUILT_IN) if DEALER_RANK in (rank, src) else set(BUILT_IN) | mine.keys() | other.keys()
        for key in sorted(keys):
            if key not in mine or key not in other:
                missing, has = (rank, src) if key not in mine else (src, rank)
                lines.append(f"{key}: rank {missing} does not state it, rank {has} does")
            elif mine[key] != other[key]:
                lines.append(f"{key}: rank {rank} has {mine[key]!r}, rank {src} has {other[key]!r}")
    return lines


def _posted(work: dist.Work | None) -> dist.Work:
    if work is None:  # pragma: no cover - gloo always returns a handle
        raise MPCError("gloo returned no handle for a handshake message")
    return work


def handshake(rank: int, peers: list[int], mine: dict[str, Any], limits: Limits, hb: Heartbeat) -> None:
    """Exchange statements with every peer in one round; ``MPCError`` naming each differing field.

    All receives are posted before any send, so the round cannot deadlock whatever the order in
    which the hosts arrive; each wait is bounded by the per-message timeout.
    """
    got = {src: torch.empty(STATEMENT_BYTES, dtype=torch.uint8) for src in peers}
    recvs = {src: _posted(dist.irecv(got[src], src)) for src in peers}
    out = encode(mine)
    sends = {dst: _posted(dist.isend(out, dst)) for dst in peers}
    for src, work in recvs.items():
        wait_work(work, limits, f"rank {rank} (start-of-run handshake)", src, hb)
    for dst, work in sends.items():
        wait_work(work, limits, f"rank {rank} (start-of-run handshake, sending)", dst, hb)
    lines = disagreements(mine, rank, {src: decode(buf, src) for src, buf in got.items()})
    if lines:
        raise MPCError(
            "MPC run refused at the start: the ranks disagree on what every host must share ("
            + "; ".join(lines)
            + "). Start every host with the same privlab version, MPCConfig (cmp_bits, cmp_tree, frac_bits, "
            "range_checks) and model."
        )
