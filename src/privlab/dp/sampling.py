"""Poisson sampling (variable batch size, empty batches allowed) and virtual batches.

The privacy amplification by subsampling that the accountant applies (Abadi et al. 2016; Mironov
et al. 2019, "Renyi Differential Privacy of the Sampled Gaussian Mechanism"; Zhu et al. 2022 for PLD)
assumes each example enters each batch *independently* with probability q, so the batch size is
Binomial(N, q) and may be zero. :class:`PoissonSampler` draws exactly that.

Virtual batches: a large logical (Poisson) batch is split into physical chunks of at most
``physical_batch_size`` examples so it fits in memory. The optimizer sums clipped gradients over the
chunks and adds noise and steps once per logical batch; the privacy guarantee is that of the logical
batch.

Unit-level sampling (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
Models"): when several examples come from one privacy unit (a user, a document, a secret repeated in
the text), :class:`UnitPoissonSampler` includes each *unit* independently with probability q and
takes one uniformly chosen example of every sampled unit. A unit then adds at most one clipped
gradient (norm <= C) to a step, so the accountant's (q, sigma, steps) bound the privacy loss of adding
or removing a whole unit, not one example.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from privlab._validation import check_choice, check_int, check_real
from privlab.dp.noise import secure_uniform
from privlab.errors import InvalidParameterError


class PoissonSampler:
    """Yields ``steps`` index batches; each index is included independently with probability ``sample_rate``.

    ``steps`` defaults to ``round(1 / sample_rate)`` (one expected epoch). ``secure=True`` draws the
    inclusion coins from ``os.urandom`` instead of the seeded ``generator``.
    """

    def __init__(
        self,
        num_samples: int,
        sample_rate: float,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        secure: bool = False,
    ) -> None:
        self.num_samples = check_int(num_samples, "num_samples", "PoissonSampler", low=1)
        self.sample_rate = check_real(sample_rate, "sample_rate", "PoissonSampler", low=0.0, high=1.0, low_open=True)
        default_steps = round(1 / self.sample_rate)
        self.steps = default_steps if steps is None else check_int(steps, "steps", "PoissonSampler", low=1)
        self.generator = generator
        self.secure = secure

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            if self.secure:
                mask = torch.from_numpy(secure_uniform(self.num_samples) < self.sample_rate)
            else:
                # float64: float32 coins are multiples of 2^-24, so the rate would be ceil(q 2^24) / 2^24 > q
                mask = torch.rand(self.num_samples, generator=self.generator, dtype=torch.float64) < self.sample_rate
            yield mask.nonzero().flatten().tolist()


PER_UNIT = ("one", "all")


def unit_codes(unit_ids: Sequence[Any] | torch.Tensor, owner: str) -> torch.Tensor:
    """Dense codes ``0 .. U-1`` (int64, in order of first appearance) of a 1-D sequence of unit ids."""
    if isinstance(unit_ids, torch.Tensor):
        if unit_ids.dim() != 1 or unit_ids.dtype.is_floating_point or unit_ids.dtype.is_complex:
            raise InvalidParameterError(
                f"The 'unit_ids' parameter of {owner} must be a 1-D integer tensor (one unit id per example). "
                f"Got a tensor of shape {tuple(unit_ids.shape)} and dtype {unit_ids.dtype} instead."
            )
        values: list[Any] = unit_ids.tolist()
    elif isinstance(unit_ids, str | bytes) or not isinstance(unit_ids, Sequence):
        raise InvalidParameterError(
            f"The 'unit_ids' parameter of {owner} must be a sequence with one unit id per example. "
            f"Got {type(unit_ids).__name__} instead."
        )
    else:
        values = list(unit_ids)
    if not values:
        raise InvalidParameterError(
            f"The 'unit_ids' parameter of {owner} must name the unit of at least one example. Got [] instead."
        )
    bad = [v for v in values if isinstance(v, float | bool) or v is None]
    if bad:
        raise InvalidParameterError(
            f"The 'unit_ids' parameter of {owner} must hold ints or strings (unit labels). Got {bad!r} instead."
        )
    try:
        index: dict[Any, int] = {}
        codes = [index.setdefault(v, len(index)) for v in values]
    except TypeError as exc:
        raise InvalidParameterError(
            f"The 'unit_ids' parameter of {owner} must hold hashable unit labels (ints or strings). Got {exc}."
        ) from None
    return torch.tensor(codes, dtype=torch.long)


class UnitPoissonSampler:
    """Yields ``steps`` index batches: each *unit* enters independently with probability ``sample_rate``
    (McMahan et al. 2018, user-level DP-SGD).

    ``unit_ids[i]`` is the unit of example i (any ints or strings). ``per_unit="one"``: a sampled
    unit contributes one of its examples, chosen uniformly, so a batch holds Binomial(U, q) examples,
    never two of one unit, and per-example clipping to C bounds a unit's contribution to C.
    ``per_unit="all"``: a sampled unit contributes all its examples, and the optimizer must clip
    their *summed* gradient (``DPOptimizer.set_groups``; :func:`privlab.dp.make_private` wires it).
    Either way the subsampled Gaussian accountant applies at the unit level with
    ``q = sample_rate``. ``steps`` defaults to ``round(1 / sample_rate)``; ``secure=True`` draws the
    coins and the choices from ``os.urandom``. Indices are yielded in increasing order.
    """

    def __init__(
        self,
        unit_ids: Sequence[Any] | torch.Tensor,
        sample_rate: float,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        secure: bool = False,
        per_unit: str = "one",
    ) -> None:
        owner = "UnitPoissonSampler"
        self.unit_of = unit_codes(unit_ids, owner)
        self.per_unit = check_choice(per_unit, "per_unit", owner, PER_UNIT)
        self.sample_rate = check_real(sample_rate, "sample_rate", owner, low=0.0, high=1.0, low_open=True)
        self.steps = round(1 / self.sample_rate) if steps is None else check_int(steps, "steps", owner, low=1)
        self.generator = generator
        self.secure = secure
        self.num_samples = int(self.unit_of.numel())
        self.counts = torch.bincount(self.unit_of)
        self.num_units = int(self.counts.numel())
        self._order = torch.argsort(self.unit_of, stable=True)  # examples grouped by unit
        self._offsets = torch.cumsum(self.counts, 0) - self.counts

    def __len__(self) -> int:
        return self.steps

    def _uniform(self, n: int) -> torch.Tensor:
        if self.secure:
            return torch.from_numpy(secure_uniform(n))
        return torch.rand(n, generator=self.generator, dtype=torch.float64)

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            units = (self._uniform(self.num_units) < self.sample_rate).nonzero().flatten()
            if self.per_unit == "all":
                yield sorted(torch.isin(self.unit_of, units).nonzero().flatten().tolist())
                continue
            counts = self.counts[units]
            pick = (self._uniform(len(units)) * counts).long().clamp(max=counts - 1) if len(units) else counts
            yield sorted(self._order[self._offsets[units] + pick].tolist())


class FixedSizeSampler:
    """Yields ``steps`` batches of exactly ``batch_size`` distinct indices, each a uniform random subset
    drawn independently of the other steps (sampling without replacement within a step).

    Accounted by :mod:`privlab.accounting.fixed_size` (replace-one adjacency). Shuffling once per epoch
    and cutting the permutation into batches is *not* this sampler: its batches are not independent.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        steps: int,
        generator: torch.Generator | None = None,
        secure: bool = False,
    ) -> None:
        self.num_samples = check_int(num_samples, "num_samples", "FixedSizeSampler", low=1)
        self.batch_size = check_int(batch_size, "batch_size", "FixedSizeSampler", low=1, high=self.num_samples)
        self.steps = check_int(steps, "steps", "FixedSizeSampler", low=1)
        self.generator = generator
        self.secure = secure

    @property
    def sample_rate(self) -> float:
        return self.batch_size / self.num_samples

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            if self.secure:
                order = torch.from_numpy(secure_uniform(self.num_samples)).argsort()
            else:
                order = torch.randperm(self.num_samples, generator=self.generator)
            yield order[: self.batch_size].tolist()


class ShardSampler:
    """A sampler over one rank's shard of the dataset: the inner sampler's local indices mapped to the
    dataset's (data-parallel DP-SGD, :mod:`privlab.dp.distributed`).

    ``indices[j]`` is the dataset index of local example j. ``unit_of`` (the dataset's unit codes)
    is kept for a unit sampler, so a loader can still tell the unit of each example of a chunk.
    """

    def __init__(
        self, inner: PoissonSampler | UnitPoissonSampler, indices: torch.Tensor, unit_of: torch.Tensor | None = None
    ) -> None:
        self.inner = inner
        self.indices = indices
        self.unit_of = unit_of
        self.sample_rate = inner.sample_rate
        self.steps = inner.steps

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.inner:
            yield self.indices[torch.as_tensor(batch, dtype=torch.long)].tolist()


Sampler = PoissonSampler | FixedSizeSampler | UnitPoissonSampler | ShardSampler


def _cut_to_empty(batch: Any) -> Any:
    """The same structure as a collated ``batch`` (of one example) with every tensor cut to length 0
    along dim 0 and every per-example list of plain values (e.g. the strings of a text batch) emptied."""
    if isinstance(batch, torch.Tensor):
        return batch[:0]
    if isinstance(batch, list) and len(batch) == 1 and isinstance(batch[0], str | bytes | int | float | bool):
        return []
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(_cut_to_empty(b) for b in batch))
    if isinstance(batch, tuple | list):
        return type(batch)(_cut_to_empty(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _cut_to_empty(v) for k, v in batch.items()}
    return batch


class SampleCollate:
    """A DataLoader ``collate_fn``: the user's ``collate_fn`` on the samples of one physical batch.

    An empty list (an empty Poisson batch) gives the user's collation of ``dataset[0]`` with every
    tensor cut to length 0, so the batch keeps its structure and per-example shapes (the step still
    adds noise). Picklable, so it runs in DataLoader workers.
    """

    def __init__(self, dataset: Dataset[Any], collate_fn: Callable[[list[Any]], Any] = default_collate) -> None:
        self.dataset = dataset
        self.collate_fn = collate_fn

    def __call__(self, samples: list[Any]) -> Any:
        if samples:
            return self.collate_fn(samples)
        return _cut_to_empty(self.collate_fn([self.dataset[0]]))


def collate_indices(dataset: Dataset[Any], indices: list[int]) -> Any:
    """Collate ``dataset[i]`` for ``i`` in ``indices``; an empty batch keeps the per-example shapes."""
    x, y = getattr(dataset, "x", None), getattr(dataset, "y", None)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):  # ArrayDataset fast path
        idx = torch.as_tensor(indices, dtype=torch.long)
        return x[idx], y[idx]
    if not indices:
        return SampleCollate(dataset)([])
    return default_collate([dataset[i] for i in indices])


class PrivateDataLoader:
    """Iterates physical batches of Poisson-sampled logical batches.

    Before each physical batch is yielded, ``on_chunk(is_last)`` tells the optimizer whether the next
    ``step()`` closes a logical batch (``physical_batch_size=None`` means one chunk per logical batch),
    and before the first chunk of each logical batch ``on_logical_batch()`` tells it that a new one
    begins (so the clipped sums of a logical batch left unfinished, e.g. by breaking out of an epoch,
    are dropped rather than released with the next one).
    With ``loader_options`` (the wrapped loader's ``collate_fn``, ``num_workers``, ``pin_memory``, ...;
    see :func:`loader_options`) the physical batches are loaded by a ``torch.utils.data.DataLoader``
    whose batch sampler is this loader's sampler, with the user's collate function and workers;
    without, in the main process by ``collate`` (default: the ``ArrayDataset`` fast path).
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        sampler: Sampler,
        physical_batch_size: int | None = None,
        collate: Callable[[Dataset[Any], list[int]], Any] = collate_indices,
        loader_options: dict[str, Any] | None = None,
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.physical_batch_size = physical_batch_size
        self.collate = collate
        self.loader_options = loader_options
        self.on_chunk: Callable[[bool], None] | None = None
        self.on_logical_batch: Callable[[], None] | None = None
        self.on_groups: Callable[[torch.Tensor], None] | None = None  # the unit of each example of a chunk

    @property
    def sample_rate(self) -> float:
        return self.sampler.sample_rate

    def __len__(self) -> int:
        return len(self.sampler)

    def _chunks(self) -> Iterator[tuple[list[int], bool, bool]]:
        """(physical batch indices, opens its logical batch?, closes it?) in order."""
        for indices in self.sampler:
            p = self.physical_batch_size or max(len(indices), 1)
            chunks = [indices[i : i + p] for i in range(0, len(indices), p)] or [[]]
            for j, chunk in enumerate(chunks):
                yield chunk, j == 0, j == len(chunks) - 1

    def _signal(self, first: bool, last: bool, chunk: list[int]) -> None:
        if first and self.on_logical_batch is not None:
            self.on_logical_batch()
        if self.on_chunk is not None:
            self.on_chunk(last)
        unit_of = getattr(self.sampler, "unit_of", None)  # a unit sampler's codes, by dataset index
        if self.on_groups is not None and unit_of is not None:
            self.on_groups(unit_of[torch.as_tensor(chunk, dtype=torch.long)])

    def __iter__(self) -> Iterator[Any]:
        if self.loader_options is None:
            for chunk, first, last in self._chunks():
                self._signal(first, last, chunk)
                yield self.collate(self.dataset, chunk)
            return
        # The DataLoader draws index lists from the sampler in order (ahead of time when workers
        # prefetch) and returns batches in that order, so the flags queue pairs each batch with its own.
        flags: deque[tuple[bool, bool, list[int]]] = deque()

        def batches() -> Iterator[list[int]]:
            for chunk, first, last in self._chunks():
                flags.append((first, last, chunk))
                yield chunk

        loader = DataLoader(self.dataset, batch_sampler=batches(), **self.loader_options)  # type: ignore[arg-type]
        for batch in loader:
            self._signal(*flags.popleft())
            yield batch


def loader_options(data_loader: DataLoader[Any]) -> dict[str, Any] | None:
    """What of ``data_loader`` the private loader keeps: collate function, workers, pinning (None: nothing to keep)."""
    custom = data_loader.collate_fn is not default_collate
    if not custom and data_loader.num_workers == 0 and not data_loader.pin_memory:
        return None
    options: dict[str, Any] = {
        "collate_fn": SampleCollate(data_loader.dataset, data_loader.collate_fn),
        "num_workers": data_loader.num_workers,
        "pin_memory": data_loader.pin_memory,
        "timeout": data_loader.timeout,
        "worker_init_fn": data_loader.worker_init_fn,
        "multiprocessing_context": data_loader.multiprocessing_context,
        "generator": data_loader.generator,  # seeds the workers (not the sampling, which is privlab's)
    }
    if data_loader.num_workers > 0:
        options["prefetch_factor"] = data_loader.prefetch_factor
    return options
