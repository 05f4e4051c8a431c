"""Poisson sampling (variable batch size, empty batches allowed) and virtual batches.

The privacy amplification by subsampling that the accountant applies (Abadi et al. 2016; Mironov
et al. 2019, "Renyi Differential Privacy of the Sampled Gaussian Mechanism"; Zhu et al. 2022 for PLD)
assumes each example enters each batch *independently* with probability q, so the batch size is
Binomial(N, q) and may be zero. :class:`PoissonSampler` draws exactly that.

Virtual batches: a large logical (Poisson) batch is split into physical chunks of at most
``physical_batch_size`` examples so it fits in memory. The optimizer sums clipped gradients over the
chunks and adds noise and steps once per logical batch; the privacy guarantee is that of the logical
batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from privlab._validation import check_int, check_real
from privlab.dp.noise import secure_uniform


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
                mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
            yield mask.nonzero().flatten().tolist()


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


def _empty_like_sample(sample: Any) -> Any:
    if isinstance(sample, torch.Tensor):
        return sample.new_empty((0, *sample.shape))
    if isinstance(sample, int | float | np.number):
        return torch.empty(0, dtype=torch.as_tensor(sample).dtype)
    if isinstance(sample, tuple | list):
        return type(sample)(_empty_like_sample(s) for s in sample)
    if isinstance(sample, dict):
        return {k: _empty_like_sample(v) for k, v in sample.items()}
    return []


def collate_indices(dataset: Dataset[Any], indices: list[int]) -> Any:
    """Collate ``dataset[i]`` for ``i`` in ``indices``; an empty batch keeps the per-example shapes."""
    x, y = getattr(dataset, "x", None), getattr(dataset, "y", None)
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):  # ArrayDataset fast path
        idx = torch.as_tensor(indices, dtype=torch.long)
        return x[idx], y[idx]
    if not indices:
        return _empty_like_sample(dataset[0])
    return default_collate([dataset[i] for i in indices])


class PrivateDataLoader:
    """Iterates physical batches of Poisson-sampled logical batches.

    After each physical batch is yielded, ``on_chunk(is_last)`` tells the optimizer whether the next
    ``step()`` closes a logical batch (``physical_batch_size=None`` means one chunk per logical batch).
    Data loading runs in the main process (``num_workers`` of the wrapped loader is not used).
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        sampler: PoissonSampler | FixedSizeSampler,
        physical_batch_size: int | None = None,
        collate: Callable[[Dataset[Any], list[int]], Any] = collate_indices,
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.physical_batch_size = physical_batch_size
        self.collate = collate
        self.on_chunk: Callable[[bool], None] | None = None

    @property
    def sample_rate(self) -> float:
        return self.sampler.sample_rate

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        for indices in self.sampler:
            p = self.physical_batch_size or max(len(indices), 1)
            chunks = [indices[i : i + p] for i in range(0, len(indices), p)] or [[]]
            for j, chunk in enumerate(chunks):
                if self.on_chunk is not None:
                    self.on_chunk(j == len(chunks) - 1)
                yield self.collate(self.dataset, chunk)
