"""The noisy all-reduce of data-parallel DP-SGD, in buckets that can start during the backward pass.

At the end of a logical batch the W ranks' clipped sums are added up and every coordinate gets
``N(0, std^2)`` exactly once (see :mod:`privlab.dp.distributed`): the trainable parameters are cut
into buckets, and for each bucket rank r noises slice r of its flattened sum
(:func:`slice_bounds`) before the bucket's all-reduce, so over all ranks each coordinate is noised
once and no rank draws the whole noise:

    released_b = sum_r (S_{r,b} + N_{r,b}),    N_{r,b} ~ N(0, std^2) on slice r of bucket b, 0 elsewhere

Per-layer clipping knows a layer's clipped sum as soon as the backward pass has reached the layer,
so :meth:`NoisySum.offer` hands it over then, and a bucket whose parameters are all known starts
its all-reduce while the backward pass goes on (as DistributedDataParallel overlaps its own).
Buckets are 1 MiB unless the DDP model was built with its own ``bucket_cap_mb``. On the measured host
(GPT, two ranks of one thread on two vCPUs, loopback gloo; ``benchmarks/dp_overhead/ddp.py``, seven
paired runs in ``results/ddp_gpt_buckets_20261207.json``) 1 MB buckets gave a median 1.10x the
non-private DDP step (1.08-1.20x) and one buffer after the backward pass 1.16x (1.15-1.26x); the
buckets were faster in 6 of 7 runs, by 0.7-18%. DDP's own layout (a first bucket of 1 MiB, then
25 MB) was slower than one buffer in three earlier runs.

Pairing. Gloo pairs collectives by their order, so every rank must issue the same all-reduces in
the same order whatever its data: buckets are fixed at set-up (parameters in reverse order, the
order a backward pass reaches them, cut at ``bucket_bytes``) and are always launched in that order.
A bucket waits for the buckets before it; whatever was not offered (an empty batch, a layer called
twice, a shared weight) is launched by :meth:`NoisySum.finish`.
The last bucket is launched only by ``finish`` and carries one more entry, the number of ranks
whose step failed: if any did, every rank raises and none updates.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist

from privlab.dp import mechanism
from privlab.dp.distributed import DataParallel, collective_error
from privlab.errors import DistributedTrainingError

Noise = Callable[[torch.Tensor], None]  # adds N(0, std^2) to a tensor in place


def slice_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[lo, hi)``: the coordinates of an ``n``-vector whose noise rank ``rank`` draws (near-equal slices)."""
    return rank * n // world_size, (rank + 1) * n // world_size


def buckets(params: dict[str, torch.Tensor], bucket_bytes: float) -> list[list[str]]:
    """The parameter names, last first, cut into buckets of at least ``bucket_bytes`` each."""
    out: list[list[str]] = [[]]
    size = 0
    for name in reversed(params):
        if out[-1] and size >= bucket_bytes:
            out.append([])
            size = 0
        out[-1].append(name)
        size += params[name].numel() * params[name].element_size()
    return out


class NoisySum:
    """One logical batch's noisy sum over the ranks: ``offer`` final sums early, ``finish`` to get the result.

    ``params`` fixes the names, shapes and dtypes; ``bucket_bytes = inf`` gives one all-reduce of a
    flat buffer. The same object serves every logical batch (:meth:`reset` between them).
    """

    def __init__(self, params: dict[str, torch.Tensor], par: DataParallel, bucket_bytes: float = float("inf")) -> None:
        self.par = par
        self.dtypes = {k: p.dtype for k, p in params.items()}
        self.shapes = {k: p.shape for k, p in params.items()}
        self.buckets = buckets(params, bucket_bytes)
        self.reset()

    def reset(self) -> None:
        """Forget a logical batch (offers, launched all-reduces). Launched ones complete on their own."""
        self.ready: dict[str, torch.Tensor] = {}
        self.flats: list[torch.Tensor] = []
        self.works: list[dist.Work] = []

    def offered(self, name: str) -> bool:
        """Whether ``name``'s sum has been handed over in this logical batch (it can no longer change)."""
        return name in self.ready

    def offer(self, values: dict[str, torch.Tensor], noise: Noise | None) -> None:
        """This rank's final clipped sums of some parameters; launch every bucket that is now complete.

        ``noise`` adds this rank's noise to a slice in place (``None``: no noise).
        """
        self.ready.update(values)
        try:
            while len(self.works) < len(self.buckets) - 1 and self._complete(len(self.works)):
                self._launch(self.ready, noise, failed=False)
        except (RuntimeError, dist.DistBackendError) as exc:
            raise collective_error("sending clipped gradients during the backward pass", self.par, exc) from exc

    def finish(
        self, rest: dict[str, torch.Tensor], noise: Noise | None, failed: bool = False
    ) -> dict[str, torch.Tensor]:
        """Launch the remaining buckets (sums from ``rest``, zeros where absent) and wait for all of them.

        ``failed``: this rank's step failed; it sends zeros and the failure flag (and later raises its own
        error). Returns ``{name: sum over ranks + noise}`` in fresh tensors, equal on every rank; raises
        :class:`DistributedTrainingError` if any rank failed or a collective did.
        """
        values = {**rest, **self.ready}
        try:
            while len(self.works) < len(self.buckets):
                self._launch(values, None if failed else noise, failed)
            for work in self.works:
                work.wait()
        except (RuntimeError, dist.DistBackendError) as exc:
            raise collective_error("adding up the clipped gradients", self.par, exc) from exc
        finally:
            flats, self.ready, self.flats, self.works = self.flats, {}, [], []
        failures = int(flats[-1][-1])
        if failures:
            raise DistributedTrainingError(
                f"Data-parallel DP-SGD: {failures} of the {self.par.world_size} ranks failed in this step (see that "
                f"rank's error); no update was applied on any rank (this is rank {self.par.rank})."
            )
        out: dict[str, torch.Tensor] = {}
        for names, flat in zip(self.buckets, flats, strict=True):
            parts = flat[: sum(self.shapes[k].numel() for k in names)].split([self.shapes[k].numel() for k in names])
            out.update({k: v.view(self.shapes[k]).to(self.dtypes[k]) for k, v in zip(names, parts, strict=True)})
        return out

    def _complete(self, b: int) -> bool:
        return all(k in self.ready for k in self.buckets[b])

    def _launch(self, values: dict[str, torch.Tensor], noise: Noise | None, failed: bool) -> None:
        b = len(self.works)
        names = self.buckets[b]
        last = b == len(self.buckets) - 1
        parts = [
            values[k].reshape(-1) if k in values and not failed
            else torch.zeros(self.shapes[k].numel(), dtype=self.dtypes[k])
            for k in names
        ]
        flat = torch.cat([*parts, torch.tensor([float(failed)])] if last else parts)
        n = flat.numel() - int(last)
        if noise is not None:
            lo, hi = slice_bounds(n, self.par.rank, self.par.world_size)
            noise(flat[lo:hi])
        self.flats.append(flat)
        self.works.append(dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.par.group, async_op=True))


def gaussian(std: float, generator: torch.Generator | None, secure: bool) -> Noise | None:
    """The in-place noise of :class:`NoisySum`: ``x += N(0, std^2)`` (``None`` for ``std = 0``)."""
    if std <= 0:
        return None

    def add(x: torch.Tensor) -> None:
        x.add_(mechanism.gaussian_noise(x, std, generator, secure))

    return add
