"""Seeded canaries: examples planted in training data to measure memorisation.

* Classifier canaries are real examples with a wrong label (mislabelled canaries; Jagielski et al.
  2020 "Auditing Differentially Private Machine Learning", Nasr et al. 2023 "Tight Auditing of
  Differentially Private Machine Learning"): a model that learns the wrong label memorised the
  example, since nothing else in the data supports it.
* Text canaries are random secrets in a fixed format ("my pin is 3918 2204"), after Carlini et al.
  2019 "The Secret Sharer": their exposure is measured against the other candidates of the format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from privlab._validation import check_int
from privlab.data.dataset import ArrayDataset
from privlab.errors import InvalidParameterError


@dataclass(frozen=True, eq=False)
class ClassifierCanaries:
    """``n`` canaries: ``data`` (the mislabelled examples) and the row ``source_index`` each came from."""

    data: ArrayDataset
    source_index: torch.Tensor
    true_labels: torch.Tensor


def mislabelled_canaries(dataset: ArrayDataset, n: int, seed: int) -> ClassifierCanaries:
    """Take ``n`` distinct random rows of ``dataset`` and give each a uniformly random *wrong* label."""
    check_int(n, "n", "mislabelled_canaries", low=1, high=len(dataset))
    check_int(seed, "seed", "mislabelled_canaries", low=0)
    k = dataset.num_classes
    if k < 2:
        raise InvalidParameterError(
            f"The 'dataset' parameter of mislabelled_canaries must have at least 2 classes. Got {k} instead."
        )
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(dataset), generator=g)[:n]
    true = dataset.y[idx]
    shift = torch.randint(1, k, (n,), generator=g)  # 1..k-1, so the new label always differs
    wrong = (true + shift) % k
    return ClassifierCanaries(ArrayDataset(dataset.x[idx].clone(), wrong, "canaries", dataset.classes), idx, true)


@dataclass(frozen=True)
class SecretCanaries:
    """Text canaries: each ``secrets[i]`` is ``template.format(digits)``; ``space`` is the number of
    possible secrets (10 ** n_digits), the denominator of exposure."""

    template: str
    secrets: tuple[str, ...]
    digits: tuple[str, ...]
    space: int


def secret_canaries(n: int, seed: int, template: str = "my secret number is {}", n_digits: int = 9) -> SecretCanaries:
    """``n`` distinct random digit strings inserted into ``template`` (which must contain ``{}``)."""
    check_int(n, "n", "secret_canaries", low=1)
    check_int(n_digits, "n_digits", "secret_canaries", low=1, high=18)
    check_int(seed, "seed", "secret_canaries", low=0)
    if template.count("{}") != 1:
        raise InvalidParameterError(
            f"The 'template' parameter of secret_canaries must contain exactly one '{{}}'. Got {template!r} instead."
        )
    space = 10**n_digits
    if n > space:
        raise InvalidParameterError(
            f"The 'n' parameter of secret_canaries must be at most 10**n_digits={space}. Got {n} instead."
        )
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    while len(chosen) < n:
        chosen.add(int(rng.integers(0, space)))
    digits = tuple(str(v).zfill(n_digits) for v in sorted(chosen, key=lambda _: rng.random()))
    return SecretCanaries(template, tuple(template.format(d) for d in digits), digits, space)
