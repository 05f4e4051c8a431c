"""Data-parallel DP-SGD on PyTorch's ``DistributedDataParallel``: noise once per logical batch.

Give :func:`privlab.dp.make_private` a ``DistributedDataParallel``-wrapped model in every process of
a ``torch.distributed`` group. Each of the W ranks clips its own examples' gradients as one process
would; at the end of a logical batch the clipped sums are added up across the ranks by all-reduce,
and the Gaussian noise is drawn once for every coordinate before it (rank r draws the noise of its
slice r of each bucket of the parameters, :mod:`privlab.dp.allreduce`):

    g~ = (sum_r sum_{i in B_r} clip_C(g_i) + N(0, sigma^2 C^2 I)) / (q N)

which is, number for number, the one-process mechanism on the union of the ranks' batches
(Abadi et al. 2016, Alg. 1). Every rank then applies the same update, so the replicas stay equal.
Noise drawn in full on every rank would add W times the variance (sqrt(W) times the accountant's
sigma); drawing one slice per rank also splits the sampling work W ways. Flat and ghost clipping
need every layer's norms before any sum is final, so they send one flat buffer after the backward
pass; per-layer clipping sends buckets of 1 MiB (or of the DDP model's ``bucket_cap_mb``, if it was
built with one) while the backward pass is still running, as DDP does (:mod:`privlab.dp.allreduce`).

Sampling: example ``i`` of the (full, identical on every rank) dataset lives on rank ``i mod W``
(with ``unit_ids``: every example of unit ``u`` on rank ``u mod W``), and each rank Poisson-samples
its own shard at rate ``q = W b / N`` with its own coins, where ``b`` is the loader's (per-rank)
``batch_size``. So every example (unit) enters the global batch independently with probability q,
the subsampled Gaussian's assumption, and the expected global batch is ``W b`` as in plain DDP.

DDP's own gradient all-reduce is switched off (``require_backward_grad_sync = False``): it would
average raw, unclipped gradients, and privlab's capture leaves most ``.grad`` unset during the
backward pass. At ``make_private`` the ranks exchange a statement of everything that shapes the
mechanism (sigma, C, q, delta, clipping, parameter shapes, ...) and keeps the replicas equal (the
optimizer's class and settings, a hash of every weight and buffer); any difference stops every rank
with an error naming the field, before a step is taken. ``DDP.join()`` is refused (its collectives
do not pair with privlab's; an empty Poisson batch takes part in the step anyway).

Trust model (as in Opacus' DPDDP): the ranks are one party's workers. A rank knows the noise it drew,
so it could subtract it from its slice of the released sum; the guarantee is about what the training
releases (the model and its updates), not about what one rank learns of another's gradients.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from privlab.dp import noise
from privlab.errors import DistributedTrainingError, InvalidParameterError, PrivlabError

PER_LAYER_BUCKET_BYTES = float(2**20)  # measured faster than DDP's own layout (1 MiB, then 25 MB): allreduce


@dataclass(frozen=True)
class DataParallel:
    """The ``torch.distributed`` group of a data-parallel DP-SGD training and this process's place in it."""

    group: Any  # a torch.distributed ProcessGroup (None: the default group)
    rank: int
    world_size: int
    # per-layer clipping's all-reduce buckets: the DDP model's bucket_cap_mb if set, else 1 MiB
    bucket_bytes: float = PER_LAYER_BUCKET_BYTES


def bare(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` model; any other model itself."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def unwrap(model: nn.Module, owner: str) -> tuple[nn.Module, DataParallel | None]:
    """``(module, DataParallel)`` of a ``DistributedDataParallel`` model, ``(model, None)`` otherwise.

    DDP's gradient synchronisation is switched off for good (see the module docstring).
    """
    if isinstance(model, nn.DataParallel):
        raise InvalidParameterError(
            f"The 'model' parameter of {owner} must not be an nn.DataParallel: its replicas would each see a "
            "slice of the batch that the capture cannot split per example. Use DistributedDataParallel "
            "(one process per device), or the bare module."
        )
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        return model, None
    group = model.process_group
    try:
        rank, world = dist.get_rank(group), dist.get_world_size(group)
    except (RuntimeError, ValueError) as exc:  # pragma: no cover - DDP cannot be built without a group
        raise InvalidParameterError(
            f"The 'model' parameter of {owner} is a DistributedDataParallel whose process group is not usable "
            f"({exc}). Call torch.distributed.init_process_group first."
        ) from None
    backend = dist.get_backend(group)
    if backend != "gloo":
        raise InvalidParameterError(
            f"The 'model' parameter of {owner} must be a DistributedDataParallel over a gloo process group: "
            "data-parallel DP-SGD runs on CPU tensors (its noise comes from a CPU generator, as in one process). "
            f"Got a {backend!r} process group instead."
        )
    if getattr(model, "static_graph", False):
        raise InvalidParameterError(
            f"The 'model' parameter of {owner} must be a DistributedDataParallel built without static_graph=True: "
            "privlab switches DDP's own gradient all-reduce off (it adds up clipped gradients itself), which a "
            "static-graph reducer does not allow. Got static_graph=True instead."
        )
    refuse_join(model, owner)
    model.require_backward_grad_sync = False
    # DDP leaves its first bucket smaller than the rest only when bucket_cap_mb was not given
    cap = PER_LAYER_BUCKET_BYTES if model.bucket_bytes_cap_default else float(model.bucket_bytes_cap)
    return model.module, DataParallel(group, rank, world, cap)


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The bytes of ``t``'s values (a contiguous CPU copy), for hashing."""
    return bytes(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module``: names, shapes, dtypes and values, in module order.

    The ranks compare it (:func:`agree`): DDP makes the replicas equal when it is built, but weights
    loaded or changed on some ranks only after that (a checkpoint read by rank 0, an unseeded
    ``add_lora`` on ``ddp.module``) would make them train different models from the same updates.
    """
    h = hashlib.sha256()
    for kind, named in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
        for name, t in named:
            h.update(f"{kind} {name} {tuple(t.shape)} {t.dtype}\n".encode())
            h.update(tensor_bytes(t))
    return h.hexdigest()


def refuse_join(model: nn.Module, owner: str) -> None:
    """Raise if ``model`` (a ``DistributedDataParallel``) is inside its ``join()`` context.

    Under ``join()`` DDP's forward pass adds collectives of its own (it tells the joined ranks it
    is still running), which privlab's all-reduces of clipped gradients do not pair with: a rank
    would receive the wrong message and gloo aborts the process. privlab needs no ``join()``: a rank
    whose Poisson batch is empty still takes part in every step (its clipped sum is zero).
    """
    config = getattr(model, "_join_config", None)
    if isinstance(model, nn.parallel.DistributedDataParallel) and getattr(config, "enable", False):
        raise InvalidParameterError(
            f"The 'model' parameter of {owner} must not be used inside DistributedDataParallel.join(): join adds "
            "collectives to DDP's forward pass that do not pair with privlab's all-reduce of clipped gradients "
            "(a rank would crash in gloo). Data-parallel DP-SGD does not need join: every rank takes part in "
            "every step, with an empty batch when its Poisson draw is empty. Remove the join() context."
        )


def dataset_fingerprint(dataset: Any, items: int = 64) -> str:
    """SHA-256 of ``len(dataset)`` and of ``items`` evenly spaced examples.

    The ranks compare it (:func:`agree`): shards are taken by position, so a dataset in a different
    order on some rank would put examples on two ranks (sensitivity 2C) and others on none.
    Tensors, numpy arrays and whatever ``np.asarray`` turns into a non-object array (a PIL image)
    are hashed by shape, dtype and bytes (never by ``repr``, which numpy truncates); numbers,
    strings and other values with their own ``repr`` by it. An object whose ``repr`` is
    ``object.__repr__``'s (it holds a memory address, different on every rank) is refused with
    :class:`~privlab.errors.InvalidParameterError`: it cannot be compared across processes.
    """
    n = len(dataset)
    h = hashlib.sha256(str(n).encode())

    def array(x: np.ndarray) -> None:
        h.update(str((type(x).__name__, x.shape, x.dtype.str)).encode())
        if x.dtype == object:
            for v in x.ravel().tolist():
                feed(v)
        else:
            h.update(np.ascontiguousarray(x).tobytes())

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            h.update(str((tuple(x.shape), str(x.dtype))).encode())
            h.update(tensor_bytes(x))
        elif isinstance(x, tuple | list):
            h.update(f"{type(x).__name__}[{len(x)}]".encode())
            for v in x:
                feed(v)
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(str(k).encode())
                feed(x[k])
        elif isinstance(x, str | bytes | int | float | complex | bool | None):
            h.update(repr(x).encode())
        elif isinstance(x, np.ndarray | np.generic):
            array(np.asarray(x))
        else:
            try:
                converted = np.asarray(x)
            except Exception:  # anything numpy cannot convert is judged by its repr below
                converted = None
            if converted is not None and converted.dtype != object:
                h.update(type(x).__qualname__.encode())
                array(converted)
                return
            text = repr(x)
            if type(x).__repr__ is object.__repr__ or " at 0x" in text:
                raise InvalidParameterError(
                    f"The 'data_loader' parameter of make_private must have a dataset whose examples the ranks can "
                    f"compare (a data-parallel training checks they all hold the same dataset, in the same order). "
                    f"Got examples holding a {type(x).__module__}.{type(x).__qualname__}, whose repr ({text[:60]}) "
                    "includes a memory address. Return tensors, numpy arrays, numbers or strings from the "
                    "dataset's __getitem__ (e.g. a ToTensor transform), or give the type a __repr__ of its content."
                )
            h.update(text.encode())

    for i in sorted({(j * (n - 1)) // max(1, items - 1) for j in range(min(items, n))}):
        feed(dataset[i])
    return h.hexdigest()


def shard_indices(n: int, rank: int, world_size: int, units: torch.Tensor | None = None) -> torch.Tensor:
    """The indices of the examples rank ``rank`` owns: ``i mod W == rank``, or ``units[i] mod W == rank``."""
    key = torch.arange(n) if units is None else units
    return (key % world_size == rank).nonzero().flatten()


def rank_seed(seed: int, rank: int, stream: str) -> int:
    """A seed for rank ``rank``'s ``stream`` ("sampling" coins, "noise"), distinct across ranks and streams."""
    return noise.derive_seed(seed, "privlab-dp", stream, rank)


def collective_error(what: str, par: DataParallel, exc: BaseException) -> DistributedTrainingError:
    return DistributedTrainingError(
        f"Data-parallel DP-SGD failed while {what} on rank {par.rank} of {par.world_size}: {exc}. Another rank "
        "has probably stopped (crashed, was killed, or left the training loop early). No update was applied "
        "on this rank for this step; restart every rank from the last checkpoint."
    )


def _all_gather_bytes(payload: bytes, par: DataParallel) -> list[bytes]:
    size = torch.tensor([len(payload)], dtype=torch.int64)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(par.world_size)]
    dist.all_gather(sizes, size, group=par.group)
    width = int(max(s.item() for s in sizes))
    buf = torch.zeros(width, dtype=torch.uint8)
    buf[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    bufs = [torch.zeros(width, dtype=torch.uint8) for _ in range(par.world_size)]
    dist.all_gather(bufs, buf, group=par.group)
    return [bytes(b[: int(s.item())].tolist()) for b, s in zip(bufs, sizes, strict=True)]


_HINTS = {  # how to fix a disagreement on a field that is not a make_private argument
    "weights": "The model's parameters or buffers differ: change them on every rank alike (load a checkpoint on "
    "every rank, seed random initialisation such as add_lora the same way), or before wrapping the model in "
    "DistributedDataParallel, which copies rank 0's.",
    "optimizer": "Build the optimizer with the same class and settings on every rank.",
}


def _every_rank(message: str) -> InvalidParameterError:
    """An error every rank raises together (after the agreement round), marked so it is not shared again."""
    exc = InvalidParameterError(message)
    exc.raised_by_every_rank = True  # type: ignore[attr-defined]
    return exc


def agree(statement: dict[str, Any], par: DataParallel, owner: str) -> None:
    """Check that every rank states the same mechanism; raise on every rank, naming the fields, if not.

    ``statement`` is JSON-serialisable; long values are compared by their SHA-256. A statement
    ``{"refused": message}`` (see :func:`shared_refusal`) makes every other rank raise with it.
    """
    try:
        texts = _all_gather_bytes(json.dumps(statement, sort_keys=True).encode(), par)
    except (RuntimeError, dist.DistBackendError) as exc:
        raise collective_error("comparing the ranks' settings", par, exc) from exc
    states = [json.loads(t) for t in texts]
    refused = [(r, s["refused"]) for r, s in enumerate(states) if "refused" in s]
    if refused:
        r, why = refused[0]
        raise _every_rank(f"{owner} was refused on rank {r} of {par.world_size}, so every rank stops: {why}")
    diffs = []
    for key in sorted(set().union(*states)):
        values = [s.get(key) for s in states]
        if any(v != values[0] for v in values):
            shown = ", ".join(f"rank {r} has {_short(v)}" for r, v in enumerate(values))
            diffs.append(f"{key}: {shown}")
    if diffs:
        hints = "".join(f" {hint}" for key, hint in _HINTS.items() if any(d.startswith(key) for d in diffs))
        raise _every_rank(
            f"The parameters of {owner} must be the same on every rank of a data-parallel training (they fix the "
            f"mechanism the accountant bounds and keep the replicas equal). The ranks disagree on "
            f"{'; '.join(diffs)}.{hints}"
        )


@contextmanager
def shared_refusal(par: DataParallel | None, owner: str, model: nn.Module | None = None) -> Iterator[None]:
    """Run a rank's set-up; if it raises, tell the other ranks (they raise too) before re-raising.

    Without it, a rank refused by a parameter check would leave the others waiting in
    :func:`agree` until the process group's timeout. A refused DDP ``model`` gets its own gradient
    synchronisation back.
    """
    try:
        yield
    except Exception as exc:
        if par is not None and not getattr(exc, "raised_by_every_rank", False):
            with suppress(PrivlabError, RuntimeError):
                agree({"refused": f"{type(exc).__name__}: {exc}"}, par, owner)
        if isinstance(model, nn.parallel.DistributedDataParallel):  # unwrap switched its sync off
            model.require_backward_grad_sync = True
        raise


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}"
